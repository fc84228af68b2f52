"""The architecture contract ([tool.importlinter] in pyproject.toml): the layers and no import cycles, checked
by import-linter (`lint-imports`, through .ci/lint-imports) so that a cycle or an upward import fails the
suite as it fails CI."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(importlib.util.find_spec("importlinter") is None,
                                reason="import-linter is not installed (the test extra)")


def lint_imports(repo: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable}
    return subprocess.run(["bash", str(repo / ".ci" / "lint-imports")], capture_output=True, text=True, env=env,
                          timeout=300)


def copy_of_repo(tmp_path: Path) -> Path:
    """The files the check reads (package, methods, backbones, the contract, the script) in a scratch folder."""
    copy = tmp_path / "repo"
    ignore = shutil.ignore_patterns("__pycache__")
    for folder in ("nlbench", "methods", "backbones", ".ci"):
        shutil.copytree(REPO / folder, copy / folder, ignore=ignore)
    shutil.copy(REPO / "pyproject.toml", copy / "pyproject.toml")
    return copy


def test_the_package_keeps_its_layers_and_has_no_import_cycle() -> None:
    out = lint_imports(REPO)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Contracts: 2 kept, 0 broken." in out.stdout
    # Every module was analysed, methods and backbones included (they install as nlbench.methods/.backbones).
    modules = sum(1 for folder in ("nlbench", "methods", "backbones") for _ in (REPO / folder).rglob("*.py"))
    assert f"Analyzed {modules} files" in out.stdout


@pytest.mark.parametrize("module, line, broken", [
    # An engine module importing the runner: upward, and a cycle (runner → cell → train → runner).
    ("nlbench/engine/train.py", "import nlbench.run.runner", "Contracts: 0 kept, 2 broken."),
    # Two methods importing each other, inside functions (a hidden cycle is still a cycle); the layers hold.
    ("methods/gce.py", "def _hidden():\n    import nlbench.methods.elr", "Contracts: 1 kept, 1 broken."),
])
def test_an_upward_import_or_a_cycle_breaks_the_contract(tmp_path: Path, module: str, line: str,
                                                          broken: str) -> None:
    copy = copy_of_repo(tmp_path)
    if module == "methods/gce.py":  # the other half of the cycle
        with open(copy / "methods" / "elr.py", "a") as f:
            f.write("\n\ndef _hidden():\n    import nlbench.methods.gce  # noqa: F401\n")
    with open(copy / module, "a") as f:
        f.write(f"\n\n{line}  # noqa: F401\n")
    out = lint_imports(copy)
    assert out.returncode != 0
    assert broken in out.stdout, out.stdout


# Tarjan's strongly connected components over grimp's graph of the installed layout: every import, those
# inside functions included. import-linter's acyclic_siblings contract skips a package's own __init__.
CYCLES = """
import json, sys
import grimp
graph = grimp.build_graph("nlbench")
edges = {m: graph.find_modules_directly_imported_by(m) & graph.modules for m in graph.modules}
index, low, stack, on, cycles = {}, {}, [], set(), []
sys.setrecursionlimit(10_000)
def visit(v):
    index[v] = low[v] = len(index); stack.append(v); on.add(v)
    for w in edges[v]:
        if w not in index:
            visit(w); low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        component = []
        while not component or component[-1] != v:
            component.append(stack.pop()); on.discard(component[-1])
        if len(component) > 1:
            cycles.append(sorted(component))
for module in sorted(edges):
    if module not in index:
        visit(module)
print(json.dumps({"modules": len(edges), "cycles": cycles}))
"""

# Registration by import: this package's __init__ imports its files and the files import base types from the
# __init__. The list may only shrink (nlbench.datasets and nlbench.methods went this way: their base types live
# in nlbench/datasets/base.py and nlbench/engine/method_api.py).
PACKAGE_INIT_CYCLES_LEFT = ("nlbench.backbones",)


def test_no_import_cycle_anywhere_but_the_registration_packages_left(tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(REPO / "nlbench", layout / "nlbench", ignore=ignore)
    for folder in ("methods", "backbones"):
        shutil.copytree(REPO / folder, layout / "nlbench" / folder, ignore=ignore)
    out = subprocess.run([sys.executable, "-c", CYCLES], cwd=layout, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout)
    assert found["modules"] > 60  # the whole package, methods and backbones included
    for cycle in found["cycles"]:
        package = cycle[0]
        assert package in PACKAGE_INIT_CYCLES_LEFT and all(m.startswith(package + ".") for m in cycle[1:]), cycle
