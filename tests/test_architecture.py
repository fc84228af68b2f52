"""The architecture contract ([tool.importlinter] in pyproject.toml): the package layers, methods and backbone
families that import no sibling entry, and no import cycles, checked by a bare `lint-imports` from the
repository root (as CI runs it) so that a cycle or an upward import fails the suite as it fails CI."""

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
    """`lint-imports` run from ``repo``'s root, by this interpreter (import-linter reads the package from there)."""
    code = "import sys; from importlinter.cli import lint_imports_command as main; sys.argv[0] = 'lint-imports'; main()"
    return subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(repo)})


def copy_of_repo(tmp_path: Path) -> Path:
    """The files the check reads (package with its links to methods/ and backbones/, the contract) in a scratch
    folder, so that a test can break the copy."""
    copy = tmp_path / "repo"
    ignore = shutil.ignore_patterns("__pycache__")
    for folder in ("nlbench", "methods", "backbones"):
        shutil.copytree(REPO / folder, copy / folder, ignore=ignore, symlinks=True)
    shutil.copy(REPO / "pyproject.toml", copy / "pyproject.toml")
    return copy


def test_the_package_keeps_its_layers_and_has_no_import_cycle() -> None:
    out = lint_imports(REPO)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Contracts: 5 kept, 0 broken." in out.stdout
    # Every module was analysed, methods and backbones included (they install as nlbench.methods/.backbones).
    # (os.walk does not follow the links nlbench/methods and nlbench/backbones, so each file counts once.)
    modules = sum(name.endswith(".py") for folder in ("nlbench", "methods", "backbones")
                  for _, _, names in os.walk(REPO / folder) for name in names)
    assert f"Analyzed {modules} files" in out.stdout


@pytest.mark.parametrize("module, line, broken", [
    # An engine module importing the runner: upward, and a cycle (runner → cell → train → runner).
    ("nlbench/engine/train.py", "import nlbench.run.runner", "Contracts: 3 kept, 2 broken."),
    # Two methods importing each other, inside functions (a hidden cycle is still a cycle): the layers hold, the
    # methods' independence and acyclicity break.
    ("methods/gce.py", "def _hidden():\n    import nlbench.methods.elr", "Contracts: 3 kept, 2 broken."),
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


def test_no_import_cycle_anywhere_but_the_registration_packages_left() -> None:
    out = subprocess.run([sys.executable, "-c", CYCLES], cwd=REPO, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout)
    assert found["modules"] > 60  # the whole package, methods and backbones included
    for cycle in found["cycles"]:
        package = cycle[0]
        assert package in PACKAGE_INIT_CYCLES_LEFT and all(m.startswith(package + ".") for m in cycle[1:]), cycle
