"""Bad input of every kind is one line ``nlbench: error: …``, exit code 2, nothing created (issue 17).

Output folders (a file, read-only), a grid's files (missing or garbage weights, a non-UTF-8 CSV, a stray
non-image among a folder's images, empty classes and labels), ``noise audit`` arguments, argparse's own
errors, a closed pipe, and property-based tests (hypothesis) that generate malformed grids and command
lines and check the three promises on each.
"""

from __future__ import annotations

import copy
import math
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from _gridfile import VALID, RawToml, assert_one_error_line, cli, tree, write_toml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image


def run_refused(tmp_path: Path, g: dict, *fragments: str, dry: bool = False) -> None:
    path = write_toml(tmp_path / "g.toml", g)
    res, cache = tmp_path / "res", tmp_path / "cache"
    code, out, err = cli("run", *(["--dry-run"] if dry else []), "--grid", str(path), "--results", str(res),
                         "--cache", str(cache))
    assert_one_error_line(code, err, *fragments)
    assert tree(res) == [] and not cache.exists()


def with_(**changes) -> dict:
    g = copy.deepcopy(VALID)
    g.update(changes)
    return g


# ---------------------------------------------------------------- output folders, before any work
def test_results_that_is_a_file_fails_before_any_cell(tmp_path):
    (tmp_path / "res").write_text("not a folder")
    path = write_toml(tmp_path / "g.toml", VALID)
    code, out, err = cli("run", "--grid", str(path), "--results", str(tmp_path / "res"), "--cache",
                         str(tmp_path / "cache"))
    assert_one_error_line(code, err, "is a file; expected a folder")
    assert out == "" and not (tmp_path / "cache").exists()


def test_cache_that_is_a_file_fails(tmp_path):
    (tmp_path / "cache").write_text("")
    path = write_toml(tmp_path / "g.toml", VALID)
    code, _, err = cli("run", "--dry-run", "--grid", str(path), "--results", str(tmp_path / "res"), "--cache",
                       str(tmp_path / "cache"))
    assert_one_error_line(code, err, "cache folder", "is a file")
    assert not (tmp_path / "res").exists()


def _without_override(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``nlbench ARGS`` bound by file permissions: root ignores them unless it drops CAP_DAC_OVERRIDE."""
    prefix = []
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: cannot test a read-only folder")
        prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner"]
    return subprocess.run([*prefix, sys.executable, "-m", "nlbench", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.parametrize("readonly", ["results", "cache"])
def test_read_only_results_or_cache_fails_before_any_cell(readonly, tmp_path):
    write_toml(tmp_path / "g.toml", VALID)
    for name in ("results", "cache"):
        (tmp_path / name).mkdir()
    (tmp_path / readonly).chmod(0o555)
    try:
        done = _without_override("run", "--grid", "g.toml", "--results", "results", "--cache", "cache", cwd=tmp_path)
    finally:
        (tmp_path / readonly).chmod(0o755)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("nlbench: error: ") and done.stderr.count("\n") == 1, done.stderr
    assert "is not writable" in done.stderr and done.stdout == ""
    assert tree(tmp_path / "results") == [] and tree(tmp_path / "cache") == []


# ---------------------------------------------------------------- files a grid names
def test_missing_weights_file(tmp_path):
    run_refused(tmp_path, with_(backbones=[{"name": "efficientnet_lite0", "weights": "nowhere.pth"}]),
                "weights file", "nowhere.pth", "does not exist", dry=True)


def test_garbage_weights_file(tmp_path):
    (tmp_path / "garbage.pth").write_bytes(np.random.default_rng(0).bytes(4096))
    run_refused(tmp_path, with_(backbones=[{"name": "efficientnet_lite0", "weights": "garbage.pth"}]),
                "garbage.pth", "is not a readable checkpoint")


def write_png(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((6, 6, 3), value, dtype=np.uint8)).save(path)


def csv_grid(file: str) -> dict:
    return with_(datasets=["csv"], noise=[{"model": "none"}],
                 dataset_options={"csv": {"file": file, "val_size": 2, "test_size": 2}})


def test_non_utf8_csv(tmp_path):
    for i in range(8):
        write_png(tmp_path / "img" / f"{i}.png", i)
    names = ["caf\xe9", "th\xe9"]
    rows = "path,label\n" + "".join(f"img/{i}.png,{names[i % 2]}\n" for i in range(8))
    (tmp_path / "labels.csv").write_bytes(rows.encode("latin-1"))
    run_refused(tmp_path, csv_grid("labels.csv"), "labels.csv: not UTF-8 text", "save the CSV as UTF-8")


def test_non_image_among_a_folders_images(tmp_path):
    for part in ("train", "test"):
        for c in ("a", "b"):
            for i in range(4):
                write_png(tmp_path / "data" / part / c / f"{i}.png", i)
    (tmp_path / "data" / "train" / "a" / "notes.png").write_text("not an image\n")
    g = with_(datasets=["folder"], noise=[{"model": "none"}], dataset_options={"folder": {"root": "data",
                                                                                          "val_size": 2}})
    run_refused(tmp_path, g, "notes.png is not a readable image")


def test_empty_class_folder_is_not_a_class(tmp_path):
    for c in ("a", "b"):
        for i in range(4):
            write_png(tmp_path / "data" / "train" / c / f"{i}.png", i)
    (tmp_path / "data" / "train" / "empty").mkdir()
    g = with_(datasets=["folder"], noise=[{"model": "none"}],
              dataset_options={"folder": {"root": "data", "val_size": 2, "test_size": 2}})
    run_refused(tmp_path, g, "class folder", "empty has no images")


@pytest.mark.parametrize("rows, fragment", [
    (["img/0.png,ant", "img/1.png,bee", "img/2.png,ant", "img/3.png,bee", "img/4.png,cow,test"],
     "row 6: label 'cow' appears in no training row"),
    (["img/0.png,ant", "img/1.png,", "img/2.png,ant", "img/3.png,bee"], "row 3: empty label"),
])
def test_csv_labels_that_would_become_classes(rows, fragment, tmp_path):
    for i in range(5):
        write_png(tmp_path / "img" / f"{i}.png", i)
    (tmp_path / "labels.csv").write_text("path,label,split\n" + "\n".join(rows) + "\n")
    run_refused(tmp_path, csv_grid("labels.csv"), fragment)


# ---------------------------------------------------------------- noise audit arguments
@pytest.mark.parametrize("args, fragment", [
    (["--seed", "-1"], "argument --seed: -1 is negative"),
    (["--top", "-1"], "argument --top: -1 is negative"),
    (["--rate", "nan"], "--rate nan is outside [0, 1]"),
    (["--plot", "{tmp}"], "is a folder; expected the path of a .png file"),
    (["--dataset-option", "split_seed=abc"], "split_seed = 'abc': input should be a valid integer"),
    (["--dataset-option", "bogus=1"], "dataset 'digits' has no option(s) bogus"),
    (["--dataset-option", "val_fraction=2.0"], "dataset 'digits' (val_fraction=2.0) cannot be loaded"),
    (["--noise-option", "force=maybe", "--rate", "0.6", "--noise", "asym"], "force must be true or false"),
    (["--cache", "{tmp}/file"], "/file' is a file"),
])
def test_noise_audit_bad_arguments(args, fragment, tmp_path):
    (tmp_path / "file").write_text("")
    before = tree(tmp_path)
    argv = ["noise", "audit", "--dataset", "digits", "--noise", "sym", *[a.replace("{tmp}", str(tmp_path))
                                                                       for a in args]]
    code, out, err = cli(*argv)
    assert_one_error_line(code, err, fragment)
    assert out == "" and tree(tmp_path) == before


# ---------------------------------------------------------------- the command line itself
def test_argparse_errors_are_one_line_without_usage():
    for argv in (["run"], ["run", "--grid", "quickstart", "--seeds", "0"], ["lst"], ["table", "--grid", "x",
                                                                                       "--metric", "speed"]):
        code, out, err = cli(*argv)
        assert_one_error_line(code, err)
        assert "usage:" not in err and out == ""


def test_closed_pipe_is_quiet(tmp_path):
    """``nlbench list methods | head -0``: the reader has gone before the first write."""
    proc = subprocess.Popen([sys.executable, "-m", "nlbench", "list", "methods"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=tmp_path)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.wait(timeout=120)
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    assert proc.returncode == 128 + 13


def test_time_table_of_records_without_cost():
    from nlbench.report.tables import render

    record = {"dataset": "digits", "backbone": "efficientnet_lite0", "noise": "sym", "rate": 0.4, "method": "ce",
              "mode": "lp", "seed": 0, "method_tag": None, "test_acc_best": 50.0, "test_acc_last": 49.0,
              "noise_audit": None, "selection": []}
    with_cost = {**record, "seed": 1, "cost": {"wall_s": 3.0}}
    text = render([record, with_cost], metric="time", fmt="csv")
    assert "3.0" in text or "3.00" in text


# ---------------------------------------------------------------- property-based: malformed grids
# Per field, values that are wrong for it (type, range or form). Each example breaks one field of a valid
# grid (or adds an unknown key at some level), so every generated grid is invalid.
BAD_TOP = {
    "name": [5, "", "../x", "/abs", "a/b", ".x", True, ["x"]],
    "description": [3, ["d"]],
    "layout": ["table2", 1],
    "datasets": [[], "digits", [3], ["nope"], [""]],
    "backbones": [[], [3], ["vit_b17"], [{"tag": "x"}], [{"name": "efficientnet_lite0", "weights": 3}],
                  [{"name": "efficientnet_lite0", "tag": "x"}], [{"name": "efficientnet_lite0", "tag": "t" * 65}],
                  [{"name": "efficientnet_lite0", "tag": ""}]],
    "seeds": [[], 3, ["a"], [-1], [0.5], [True], [0, 0], [2**31], [0, 2**63 - 1], [2**64], [-(2**63)]],
    "slurm": [5, {"partitoin": "gpu"}, {"extra": 3}, {"setup": [1]}],
    "val_labels": ["dirty", True],
}
BAD_TRAIN = {
    "input_size": [0, -16, 2.5, "16", True],
    "lp_epochs": [0, -1, 2.5, "abc", True, math.nan],
    "lp_lr": [-1, 0, math.nan, math.inf, "0.1", True],
    "lp_batch_size": [0, 1.5, "8"],
    "fft_lr": [math.nan, -0.5],
    "momentum": [1.0, -0.1, "x"],
    "device": ["tpu", "cuda:x", 0],
    "augment": ["no", 1],
    "scheduler": ["linear", 3],
    "amp": ["fp16"],
    "lp_optimizer": ["adam"],
}
BAD_NOISE = [
    {"model": "sym", "rate": True}, {"model": "sym", "rate": "0.2"}, {"model": "sym", "rate": 1.5},
    {"model": "sym", "rate": -0.1}, {"model": "sym", "rate": math.nan}, {"model": "sym"},
    {"model": "symm", "rate": 0.2}, {"rate": 0.2}, {"model": "asym", "rate": 0.6},
    {"model": "asym", "rate": 0.2, "force": "yes"}, {"model": "asym", "rate": 0.2, "mapping_file": "none.json"},
    {"model": "sym", "rate": 0.2, "convention": "nope"}, {"model": "sym", "rate": 0.2, "extra": 1},
    {"model": "inst", "rate": 0.2, "std": 0}, {"model": "inst", "rate": 0.2, "inputs_kind": "voxels"}, "sym", 3,
]
BAD_METHODS = [
    {"method": "ce"}, {"mode": "lp"}, {"method": "ce", "mode": "xx"}, {"method": "turn", "mode": "fft"},
    {"method": "gce", "mode": "lp", "params": [1]}, {"method": "gce", "mode": "lp", "params": {"q": "x"}},
    {"method": "gce", "mode": "lp", "params": {"q": math.nan}}, {"method": "gce", "mode": "lp", "params": {"qq": 1}},
    {"method": "elr", "mode": "lp", "params": {"beta": 1.5}}, {"method": "ce", "mode": "lp", "tag": "a b"},
    {"method": "ce", "mode": "lp", "tagg": "x"}, "ce", 7, {"method": "ce", "mode": "lp", "tag": "t" * 65},
    {"method": "ce", "mode": "lp", "tag": ""}, {"method": "ce", "mode": "lp", "tag": "é"},
]
KEYS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=2, max_size=12)


@st.composite
def malformed_grids(draw) -> dict:
    g = copy.deepcopy(VALID)
    kind = draw(st.sampled_from(["top", "train", "noise", "methods", "unknown_top", "unknown_train",
                                 "unknown_entry", "dataset_options", "deep"]))
    if kind == "deep":  # lists or inline tables within each other, up to far past Python's recursion limit
        depth = draw(st.integers(min_value=1, max_value=5000))
        opening, closing = draw(st.sampled_from([("[", "]"), ("{ a = ", " }")]))
        g[draw(st.sampled_from(["description", "seeds", "backbones", "deep"]))] = RawToml(
            opening * depth + "1" + closing * depth)
    elif kind == "top":
        key = draw(st.sampled_from(sorted(BAD_TOP)))
        g[key] = draw(st.sampled_from(BAD_TOP[key]))
    elif kind == "train":
        key = draw(st.sampled_from(sorted(BAD_TRAIN)))
        g["train"][key] = draw(st.sampled_from(BAD_TRAIN[key]))
    elif kind == "noise":
        g["noise"] = draw(st.permutations([*g["noise"], draw(st.sampled_from(BAD_NOISE))]))
    elif kind == "methods":
        g["methods"] = draw(st.permutations([*g["methods"], draw(st.sampled_from(BAD_METHODS))]))
    elif kind == "unknown_top":
        g[draw(KEYS.filter(lambda k: k not in VALID and k not in BAD_TOP and k not in (
            "train", "dataset_options", "slurm", "noise", "methods")))] = draw(st.integers() | st.text(max_size=5))
    elif kind == "unknown_train":
        from nlbench.run.schema import train_model

        g["train"][draw(KEYS.filter(lambda k: k not in train_model().model_fields))] = 1
    elif kind == "unknown_entry":
        entry = draw(st.sampled_from(["backbones", "methods"]))
        key = draw(KEYS.filter(lambda k: k not in ("name", "tag", "weights", "method", "mode", "params")))
        g[entry] = [{**({"name": "efficientnet_lite0"} if entry == "backbones" else g["methods"][0]), key: 1}]
    else:
        g["dataset_options"] = draw(st.sampled_from([
            {"digits": {"val_fraction": 2.0}}, {"digits": {"split_seed": "x"}}, {"digits": {"nope": 1}},
            {"cifar10": {}}, {"digits": 3}, {"digits": {"test_fraction": -0.5}},
        ]))
    return g


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(malformed_grids(), st.booleans())
def test_property_malformed_grids_are_refused_with_one_line_and_nothing_written(g, dry):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        path = write_toml(tmp / "grids" / "g.toml", g)
        res, cache = tmp / "res", tmp / "cache"
        code, out, err = cli("run", *(["--dry-run"] if dry else []), "--grid", str(path), "--results", str(res),
                             "--cache", str(cache))
        assert_one_error_line(code, err)
        assert out == ""
        assert not res.exists() and not cache.exists()
        assert sorted(p.name for p in tmp.iterdir()) == ["grids"]


# ---------------------------------------------------------------- property-based: malformed command lines
@pytest.fixture(scope="module")
def valid_grid(tmp_path_factory) -> str:
    return str(write_toml(tmp_path_factory.mktemp("grid") / "g.toml", VALID))


@st.composite
def malformed_command_lines(draw) -> list[str]:
    grid = "{grid}"  # the valid grid file's path, filled in by the test
    not_int = st.sampled_from(["x", "1.5", "", "0x", "1e3", "--"])
    case = draw(st.sampled_from(["seeds", "audit_seed", "audit_top", "audit_rate", "audit_option", "unknown_flag",
                                 "bad_choice"]))
    if case == "seeds":
        seeds = draw(st.integers(max_value=0).map(str) | not_int)
        return ["run", "--dry-run", "--grid", grid, f"--seeds={seeds}"]
    audit = ["noise", "audit", "--dataset", "digits", "--noise", "sym"]
    if case == "audit_seed":
        return [*audit, f"--seed={draw(st.integers(max_value=-1).map(str) | not_int)}"]
    if case == "audit_top":
        return [*audit, f"--top={draw(st.integers(max_value=-1).map(str) | not_int)}"]
    if case == "audit_rate":
        bad = st.floats(allow_nan=True).filter(lambda r: not 0 <= r <= 1).map(repr) | not_int.filter(bool)
        return [*audit, f"--rate={draw(bad)}"]
    if case == "audit_option":
        item = draw(st.sampled_from(["=1", "noequals", "bogus=1", "split_seed=x", "val_fraction=-1",
                                     "test_fraction=true"]))
        return [*audit, f"--dataset-option={item}"]
    if case == "unknown_flag":
        return ["run", "--grid", grid, f"--{draw(KEYS)}-flag"]
    return ["table", "--grid", grid, f"--format={draw(KEYS)}"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(argv=malformed_command_lines())
def test_property_malformed_command_lines_are_refused_with_one_line(valid_grid, argv):
    argv = [a.replace("{grid}", valid_grid) for a in argv]
    with tempfile.TemporaryDirectory() as tmp:
        results, cache = Path(tmp) / "res", Path(tmp) / "cache"
        code, out, err = cli(*argv, *(["--results", str(results)] if argv[0] != "noise" else []),
                             *(["--cache", str(cache)] if argv[0] != "table" else []))
        assert_one_error_line(code, err)
        assert out == "" and not results.exists() and not cache.exists()


# ---------------------------------------------------------------- data that is not on this machine
def test_dry_run_shows_the_plan_without_the_data_and_run_refuses(tmp_path, monkeypatch):
    # A login node without CIFAR-100: the dry run still prints the plan and its cost (exit 0) and says what
    # a run would stop on; the run itself is one error line, exit 2, nothing written.
    monkeypatch.setenv("NLBENCH_DATA", str(tmp_path / "no-data-here"))
    g = with_(datasets=["cifar100"])
    path = write_toml(tmp_path / "g.toml", g)
    res, cache = tmp_path / "res", tmp_path / "cache"
    code, out, err = cli("run", "--dry-run", "--grid", str(path), "--results", str(res), "--cache", str(cache))
    assert code == 0, err
    assert out.startswith("warning: dataset 'cifar100' needs its files") and "1 to run" in out
    assert "estimated GPU time" in out
    assert tree(res) == [] and not cache.exists()
    run_refused(tmp_path, g, "dataset 'cifar100' needs its files")
