"""A new method is one file (CONTRIBUTING.md's example, verbatim); plug-ins come from another distribution through
entry points (a real .dist-info on sys.path); a wrong method fails at import with one line naming its file."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

import nlbench.methods
from nlbench.errors import ConfigError
from nlbench.methods import Method, MethodInterfaceError, register_method
from nlbench.registry import METHODS

CONTRIBUTING = Path(__file__).resolve().parents[1] / "CONTRIBUTING.md"
pytestmark = pytest.mark.slow

TINY_BACKBONE = '''
"""A tiny seeded CNN: the plug-in distribution's backbone, declared as CONTRIBUTING.md's "Add a backbone" says."""

import torch
from torch import nn

from nlbench.backbones import Backbone, Preprocessing, register_backbone


@register_backbone("plugin_tiny_cnn", source="nlbench-example-plugin", checkpoint="seeded random", feature_dim=8,
                   licence="MIT", preprocessing=Preprocessing((16, 16), (0.5,) * 3, (0.25,) * 3, "bilinear"),
                   weights="random:plugin_tiny_cnn", gflops=0.001)
def plugin_tiny_cnn(*, pretrained=True, weights=None, tag=None):
    """Tiny seeded CNN from a plug-in distribution."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                              nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return Backbone.from_facts("plugin_tiny_cnn", model, pretrained=pretrained, weights=weights, tag=tag)
'''


def documented_method_file() -> str:
    """The method file CONTRIBUTING.md's "Add a method" shows, exactly."""
    text = CONTRIBUTING.read_text()
    block = re.search(r"<!-- method-example:start -->\n```python\n(.*?)```\n<!-- method-example:end -->", text, re.S)
    assert block is not None, "CONTRIBUTING.md lost its method example"
    return block.group(1)


def cli(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    environ = {**os.environ, "CI": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "nlbench", *args], capture_output=True, text=True,
                          env=environ, cwd=cwd, timeout=600)


def write_grid(path: Path, *, backbone: str, methods: list[tuple[str, str]], input_size: int = 16) -> Path:
    rows = ",\n".join(f'  {{ method = "{m}", mode = "{mode}" }}' for m, mode in methods)
    path.write_text(textwrap.dedent(f'''\
        description = "plug-in test"
        datasets = ["digits"]
        backbones = ["{backbone}"]
        seeds = [0]
        noise = [{{ model = "sym", rate = 0.4 }}]
        methods = [
        ''') + rows + textwrap.dedent(f'''
        ]
        [train]
        input_size = {input_size}
        lp_epochs = 2
        fft_epochs = 1
        fft_batch_size = 64
        eval_batch_size = 512
        '''))
    return path


def test_documented_method_file_registers_runs_a_cell_and_shows_its_label(tmp_path):
    target = Path(nlbench.methods.__file__).parent / "mae.py"
    assert not target.exists(), f"{target} exists: this test writes CONTRIBUTING.md's example there"
    try:
        target.write_text(documented_method_file())
        listed = cli("list", "methods")
        assert listed.returncode == 0, listed.stderr
        line = next(ln for ln in listed.stdout.splitlines() if ln.startswith("mae "))
        assert "[row MAE; modes: fft, lp, lp-fft (LP-FT); source: Ghosh, Kumar & Sastry, AAAI 2017]" in line
        grid = write_grid(tmp_path / "mae.toml", backbone="efficientnet_lite0", methods=[("ce", "lp"), ("mae", "lp")])
        run = cli("run", "--grid", str(grid), "--results", str(tmp_path / "runs"), "--cache", str(tmp_path / "c"))
        assert run.returncode == 0, run.stdout + run.stderr
        table = cli("table", "--grid", str(grid), "--results", str(tmp_path / "runs"), "--format", "csv")
        assert table.returncode == 0, table.stderr
        rows = pd.read_csv(io.StringIO(table.stdout), index_col=0).index.tolist()
        assert rows == ["LP CE", "LP MAE"]  # its own label, after the built-ins (order 200)
    finally:
        target.unlink(missing_ok=True)
        for cached in (target.parent / "__pycache__").glob("mae.*.pyc"):
            cached.unlink()


def make_distribution(site: Path, modules: dict[str, str], entry_points: dict[str, dict[str, str]],
                      name: str = "nlbench-example-plugin", version: str = "0.1") -> Path:
    """A real installed distribution: a package folder and its .dist-info (METADATA, entry_points.txt,
    RECORD), as pip leaves them in site-packages."""
    package = site / "nlbench_example_plugin"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text('"""Example nlbench plug-in."""\n')
    for module, source in modules.items():
        (package / f"{module}.py").write_text(source)
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    groups = "".join(f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) + "\n"
                     for group, eps in entry_points.items())
    (info / "entry_points.txt").write_text(groups)
    files = [p.relative_to(site).as_posix() for p in sorted(site.rglob("*")) if p.is_file()]
    (info / "RECORD").write_text("".join(f"{f},,\n" for f in files) + f"{info.name}/RECORD,,\n")
    return site


def test_method_and_backbone_from_another_distribution_run_a_cell(tmp_path):
    method = documented_method_file().replace('"mae"', '"plugin_mae"').replace('label="MAE"', 'label="PlugMAE"')
    site = make_distribution(tmp_path / "site", {"mae": method, "tiny": TINY_BACKBONE}, {
        "nlbench.methods": {"plugin_mae": "nlbench_example_plugin.mae"},
        "nlbench.backbones": {"plugin_tiny": "nlbench_example_plugin.tiny"},
    })
    env = {"PYTHONPATH": str(site)}
    listed = cli("list", "methods", env=env)
    assert listed.returncode == 0, listed.stderr
    assert any(ln.startswith("plugin_mae ") and ln.endswith("(plug-in from nlbench-example-plugin)")
               for ln in listed.stdout.splitlines()), listed.stdout
    backbones = cli("list", "backbones", env=env)
    assert any(ln.startswith("plugin_tiny_cnn ") and "plug-in from nlbench-example-plugin" in ln
               for ln in backbones.stdout.splitlines()), backbones.stdout

    grid = write_grid(tmp_path / "plug.toml", backbone="plugin_tiny_cnn",
                      methods=[("plugin_mae", "lp"), ("plugin_mae", "fft")])
    results = tmp_path / "runs"
    run = cli("run", "--grid", str(grid), "--results", str(results), "--cache", str(tmp_path / "c"), env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    records = [json.loads(p.read_text()) for p in sorted((results / "plug" / "records").rglob("*.json"))]
    assert sorted((r["method"], r["mode"], r["backbone"]) for r in records) == [
        ("plugin_mae", "fft", "plugin_tiny_cnn"), ("plugin_mae", "lp", "plugin_tiny_cnn")]
    assert records[0]["cost"]["backbones_built"] >= 1
    table = cli("table", "--grid", str(grid), "--results", str(results), "--format", "csv", env=env)
    assert pd.read_csv(io.StringIO(table.stdout), index_col=0).index.tolist() == ["FFT PlugMAE", "LP PlugMAE"]


def test_plugin_that_fails_to_import_is_one_line_naming_it(tmp_path):
    site = make_distribution(tmp_path / "site", {"broken": "import not_a_module_anywhere\n"},
                             {"nlbench.methods": {"broken_method": "nlbench_example_plugin.broken"}})
    out = cli("list", "methods", env={"PYTHONPATH": str(site)})
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.count("\n") == 1, out.stderr
    assert "plug-in 'broken_method' (nlbench.methods = 'nlbench_example_plugin.broken', from nlbench-example-plugin " \
           "0.1) failed to import: ModuleNotFoundError: No module named 'not_a_module_anywhere'" in out.stderr


@pytest.mark.parametrize("body, missing", [
    # a LossMethod without its criterion
    ("class Half(LossMethod):\n    scale: float = 1.0\n", "(Half) does not implement criterion()"),
    # README's old instructions: no base class, the old run(trainer, mode)
    ("class Half:\n    def run(self, trainer, mode):\n        return None\n",
     "(Half) must subclass nlbench.methods.Method"),
    ("class Half(Method):\n    def run(self, trainer, mode):\n        return None\n",
     "(Half) run(self, trainer, mode) must take one argument besides self: run(self, ctx)"),
])
def test_wrong_method_interface_fails_at_import_naming_the_file(tmp_path, body, missing):
    source = ("from dataclasses import dataclass\nfrom nlbench.methods import LossMethod, Method, register_method\n\n"
              "@register_method('half', modes=('lp',), label='Half')\n@dataclass(frozen=True)\n" + body)
    site = make_distribution(tmp_path / "site", {"half": source},
                             {"nlbench.methods": {"half": "nlbench_example_plugin.half"}})
    out = cli("list", "methods", env={"PYTHONPATH": str(site)})
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert f"{site / 'nlbench_example_plugin' / 'half.py'}: method 'half' {missing}" in out.stderr


def test_register_method_checks_the_class_in_process():
    class NotADataclass(Method):
        def run(self, ctx):
            raise AssertionError

    with pytest.raises(MethodInterfaceError, match=r"test_plugins.py: method 'x' \(NotADataclass\) must be a "
                                                   r"@dataclass\(frozen=True\)"):
        register_method("x", modes=("lp",), label="X")(NotADataclass)
    with pytest.raises(MethodInterfaceError, match="label must be a non-empty string"):
        register_method("x", modes=("lp",), label="")
    assert "x" not in METHODS


def test_a_name_registered_twice_names_both_distributions():
    @dataclass(frozen=True)
    class Again(Method):
        def run(self, ctx):
            raise AssertionError

    with pytest.raises(ConfigError, match=r"method 'ce' is registered twice \(by nlbench and by nlbench\)"):
        register_method("ce", modes=("lp",), label="CE again")(Again)
