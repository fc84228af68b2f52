"""Issue 22, second pass: values that were checked only after something was written, or not at all, and
tracebacks where one line belongs. Each case runs the real CLI on a tiny grid (digits, efficientnet_lite0
at 16 px) and checks the three promises: exit 2, one line ``nlbench: error: …`` naming the bad value and
the choices, nothing created.
"""

from __future__ import annotations

import copy
import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _gridfile import VALID, assert_one_error_line, cli, tree, write_toml
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def with_(**changes) -> dict:
    g = copy.deepcopy(VALID)
    g.update(changes)
    return g


def run_refused(tmp_path: Path, g: dict, *fragments: str, dry: bool = False, extra: tuple[str, ...] = ()) -> str:
    path = write_toml(tmp_path / "g.toml", g)
    res, cache = tmp_path / "res", tmp_path / "cache"
    code, out, err = cli("run", *(["--dry-run"] if dry else []), "--grid", str(path), "--results", str(res),
                         "--cache", str(cache), *extra)
    assert_one_error_line(code, err, *fragments)
    assert out == "" and tree(res) == [] and not cache.exists()
    return err


def write_png(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((6, 6, 3), value, dtype=np.uint8)).save(path)


# ---------------------------------------------------------------- 3. backbone tag, before any write
@pytest.mark.parametrize("dry", [False, True])
def test_unknown_backbone_tag_is_refused_before_any_write(dry, tmp_path):
    run_refused(tmp_path, with_(backbones=[{"name": "efficientnet_lite0", "tag": "x"}]),
                "backbone 'efficientnet_lite0'", "tag 'x'", dry=dry)


# ---------------------------------------------------------------- 4. seeds a seeded library accepts
@pytest.mark.parametrize("seed", [2**64, 2**63 - 1, 2**31])
@pytest.mark.parametrize("dry", [False, True])
def test_seed_outside_the_seeded_libraries_range_is_refused(seed, dry, tmp_path):
    run_refused(tmp_path, with_(seeds=[0, seed]), f"seeds.1 = {seed}", "less than or equal to 2147483647", dry=dry)


def test_largest_seed_runs(tmp_path):
    path = write_toml(tmp_path / "g.toml", with_(seeds=[2**31 - 1]))
    code, out, err = cli("run", "--dry-run", "--grid", str(path), "--results", str(tmp_path / "r"), "--cache",
                         str(tmp_path / "c"))
    assert code == 0, err


@pytest.mark.parametrize("command", ["run", "table", "status", "report", "export"])
@pytest.mark.parametrize("count", ["100000000000", "1001", "0"])
def test_a_seed_count_beyond_the_bound_is_one_line_on_every_command(command, count, tmp_path):
    """`--seeds N` lists seeds 0..N-1: an extra digit or ten was a MemoryError traceback (table) and export took
    0 or a negative count; every command now takes 1..1000 and names the bound."""
    path = write_toml(tmp_path / "g.toml", VALID)
    code, out, err = cli(command, "--grid", str(path), "--results", str(tmp_path / "r"), "--seeds", count)
    assert_one_error_line(code, err, f"--seeds: {count}", "1 to 1000" if count != "0" else "≥ 1")
    assert tree(tmp_path / "r") == []


@pytest.mark.parametrize(("flag", "target", "message"), [
    ("--out", "afile", "is a file; expected a folder"),
    ("--out", "afile/sub", "is a file, not a folder"),
    ("--out", "", "is empty; expected a folder"),
    ("--screenshot", "folder", "is a folder; expected the path of a file"),
])
def test_report_outputs_that_cannot_be_written_are_refused_before_the_page_is_built(flag, target, message, tmp_path):
    """`report --out` naming a file or `--screenshot` naming a folder failed only after the records were read and
    the page built; now before anything."""
    (tmp_path / "afile").write_text("x")
    (tmp_path / "folder").mkdir()
    path = write_toml(tmp_path / "g.toml", VALID)
    value = str(tmp_path / target) if target else ""
    code, out, err = cli("report", "--grid", str(path), "--results", str(tmp_path / "r"), flag, value)
    assert_one_error_line(code, err, f"{flag} {value!r}", message)
    assert tree(tmp_path / "r") == []


# ---------------------------------------------------------------- 5. tags that make a file name too long
@pytest.mark.parametrize("dry", [False, True])
def test_long_method_tag_is_refused(dry, tmp_path):
    tag = "t" * 300
    run_refused(tmp_path, with_(methods=[{"method": "ce", "mode": "lp", "tag": tag}]), "tag = 'tttt",
                "at most 64 characters", dry=dry)


def test_cell_id_longer_than_a_file_name_allows_is_refused():
    # Each part of a cell id is bounded (registry names, tags ≤ 64, seed < 2**31), yet a plug-in's long names
    # could make an id too long for '<id>.json' and the temporary file written beside it.
    from nlbench.errors import ConfigError
    from nlbench.run.grids import check_cell_id

    check_cell_id("d" * 200, "grid 'x'")
    with pytest.raises(ConfigError, match=r"grid 'x': cell id d{20}.* is 201 bytes long; at most 200"):
        check_cell_id("d" * 201, "grid 'x'")


# ---------------------------------------------------------------- 6. confident learning needs ≥ folds images
def tiny_csv(tmp_path: Path, train: int, *, test_rows: list[str] = (), num_classes: int | None = None,
             labels: list[int] | None = None) -> dict:
    for i in range(train + 4):
        write_png(tmp_path / "img" / f"{i}.png", 10 * i)
    labels = labels if labels is not None else [i % 2 for i in range(train)]
    rows = [f"img/{i}.png,{labels[i]}," for i in range(train)]
    rows += [f"img/{train}.png,0,val", f"img/{train + 1}.png,1,val"]
    rows += list(test_rows) or [f"img/{train + 2}.png,0,test", f"img/{train + 3}.png,1,test"]
    (tmp_path / "labels.csv").write_text("path,label,split\n" + "\n".join(rows) + "\n")
    opts = {"file": "labels.csv"}
    if num_classes is not None:
        opts["num_classes"] = num_classes
    return with_(datasets=["csv"], noise=[{"model": "none"}], dataset_options={"csv": opts})


@pytest.mark.parametrize("dry", [False, True])
def test_confident_learning_with_fewer_training_images_than_folds_is_refused(dry, tmp_path):
    pytest.importorskip("cleanlab")
    g = tiny_csv(tmp_path, 4)
    g["methods"] = [{"method": "ce", "mode": "lp"}, {"method": "cl", "mode": "lp"}]
    run_refused(tmp_path, g, "'cl'", "5 folds", "4 training images", "params = { folds = 4 }", dry=dry)


def test_turn_selecting_by_confident_learning_with_too_few_training_images_is_refused(tmp_path):
    pytest.importorskip("cleanlab")
    g = tiny_csv(tmp_path, 4)
    g["methods"] = [{"method": "turn", "mode": "lp-fft", "params": {"selector": "cl"}}]
    run_refused(tmp_path, g, "method 'turn' (lp-fft)", "5 folds", "4 training images", "selector 'gmm'")


# ---------------------------------------------------------------- 7. a class without training images
def test_integer_labels_with_a_class_only_in_test_rows_are_refused(tmp_path):
    g = tiny_csv(tmp_path, 6, num_classes=3, test_rows=["img/8.png,2,test", "img/9.png,1,test"])
    run_refused(tmp_path, g, "class 2 has no training row", "labels.csv")


# ---------------------------------------------------------------- 8. --results ''
@pytest.mark.parametrize("command", ["run", "table", "status"])
def test_empty_results_is_refused(command, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write_toml(tmp_path / "g.toml", VALID)
    extra = ["--cache", str(tmp_path / "cache")] if command == "run" else []
    code, out, err = cli(command, "--grid", str(path), "--results", "", *extra)
    assert_one_error_line(code, err, "--results ''", "expected a folder")
    assert tree(tmp_path) == ["g.toml"]


# ---------------------------------------------------------------- 9. [slurm] keys on any run
@pytest.mark.parametrize("dry", [False, True])
def test_unknown_slurm_key_is_refused_on_a_local_run(dry, tmp_path):
    run_refused(tmp_path, with_(slurm={"partitoin": "gpu"}), "partitoin", "expected: partition", dry=dry)


# ---------------------------------------------------------------- 10. deep nesting
def test_deeply_nested_grid_value_is_one_line(tmp_path):
    text = write_toml(tmp_path / "g.toml", VALID).read_text()
    (tmp_path / "g.toml").write_text(text + "deep = " + "[" * 3000 + "]" * 3000 + "\n")
    code, out, err = cli("run", "--grid", str(tmp_path / "g.toml"), "--results", str(tmp_path / "res"),
                         "--cache", str(tmp_path / "cache"))
    assert_one_error_line(code, err, "nested too deeply")
    assert out == "" and sorted(p.name for p in tmp_path.iterdir()) == ["g.toml"]


def test_deeply_nested_value_given_as_a_table_is_one_line():
    from nlbench.errors import ConfigError
    from nlbench.run.grids import Grid

    deep: list = []
    for _ in range(3000):
        deep = [deep]
    with pytest.raises(ConfigError, match="nested too deeply"):
        Grid.from_table(with_(description=deep), name="x")


# ---------------------------------------------------------------- 11. dangling symbolic links
@pytest.mark.parametrize("which", ["results", "cache"])
def test_dangling_symlink_as_results_or_cache_is_one_line(which, tmp_path, monkeypatch):
    path = write_toml(tmp_path / "g.toml", VALID)
    (tmp_path / which).symlink_to(tmp_path / "gone")
    monkeypatch.setenv("NLBENCH_CACHE", str(tmp_path / "cache"))
    code, out, err = cli("run", "--grid", str(path), "--results", str(tmp_path / "results"))
    assert_one_error_line(code, err, "is a symbolic link to", "gone", "which does not exist")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["g.toml", which])


# ---------------------------------------------------------------- 12. file size limit (ulimit -f)
def test_file_size_limit_is_one_line_like_a_full_disk(tmp_path):
    path = write_toml(tmp_path / "g.toml", VALID)

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (512 * 1024, resource.RLIM_INFINITY))

    done = subprocess.run([sys.executable, "-m", "nlbench", "run", "--grid", str(path), "--results",
                           str(tmp_path / "res"), "--cache", str(tmp_path / "cache")], capture_output=True, text=True,
                          preexec_fn=limit, timeout=600, env={**os.environ, "CI": "1"})
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith("nlbench: error: file too large writing ") and done.stderr.count("\n") == 1, \
        done.stderr
    assert "file size limit (ulimit -f)" in done.stderr
    assert not [p for p in (tmp_path / "cache").rglob("*") if ".tmp" in p.name]


# ---------------------------------------------------------------- 13. folders where files belong
def test_claims_mutex_that_is_a_folder_is_one_line_before_any_write(tmp_path):
    (tmp_path / "res" / "g" / "claims" / ".mutex").mkdir(parents=True)
    path = write_toml(tmp_path / "g.toml", VALID)
    before = tree(tmp_path / "res")
    code, out, err = cli("run", "--grid", str(path), "--results", str(tmp_path / "res"), "--cache",
                         str(tmp_path / "cache"))
    assert_one_error_line(code, err, ".mutex", "is a folder")
    assert tree(tmp_path / "res") == before and not (tmp_path / "cache").exists()


@pytest.mark.parametrize("option", ["--output", "--plot"])
def test_table_output_naming_a_folder_is_one_line(option, tmp_path):
    path = write_toml(tmp_path / "g.toml", VALID)
    (tmp_path / "out").mkdir()
    code, out, err = cli("table", "--grid", str(path), "--results", str(tmp_path / "res"), option,
                         str(tmp_path / "out"))
    assert_one_error_line(code, err, option, "is a folder")
    assert tree(tmp_path / "out") == [] and not (tmp_path / "res").exists()


def test_cached_feature_file_replaced_by_a_folder_is_one_line(tmp_path):
    path = write_toml(tmp_path / "g.toml", VALID)
    res, cache = tmp_path / "res", tmp_path / "cache"
    code, _, err = cli("run", "--grid", str(path), "--results", str(res), "--cache", str(cache))
    assert code == 0, err
    features = sorted((cache / "features").rglob("*.npy"))
    assert features
    for f in features:
        f.unlink()
        f.mkdir()
    for record in (res / "g" / "records").rglob("*.json"):
        record.unlink()
    code, out, err = cli("run", "--grid", str(path), "--results", str(res), "--cache", str(cache))
    assert_one_error_line(code, err, "cached features", "is a folder", "remove it")
    assert not list((res / "g" / "records").rglob("*.json"))


# ---------------------------------------------------------------- 15. own data, noisy labels, no test folder
def folder_dataset(root: Path, *, test: bool) -> None:
    for c in ("ant", "bee"):
        for i in range(8):
            write_png(root / "train" / c / f"{i}.png", 20 * i + (c == "bee"))
        if test:
            for i in range(2):
                write_png(root / "test" / c / f"{i}.png", 30 * i)


@pytest.mark.parametrize("dry", [False, True])
def test_folder_with_noisy_labels_and_no_test_folder_is_refused_with_the_choices(dry, tmp_path):
    folder_dataset(tmp_path / "data", test=False)
    g = with_(datasets=["folder"], noise=[{"model": "none"}],
              dataset_options={"folder": {"root": "data", "val_size": 2, "test_size": 4}})
    run_refused(tmp_path, g, "dataset 'folder'", "held out of the noisy training images", "test/<class>/",
                "labels = \"clean\"", "nlbench advise --data folder:PATH", dry=dry)


def test_clean_validation_labels_held_out_of_noisy_data_are_refused(tmp_path):
    folder_dataset(tmp_path / "data", test=True)
    g = with_(datasets=["folder"], noise=[{"model": "none"}], val_labels="clean",
              dataset_options={"folder": {"root": "data", "val_size": 2}})
    run_refused(tmp_path, g, "val_labels = \"clean\"", "val/<class>/", dry=True)


# ---------------------------------------------------------------- 14. a plug-in that exits at import
@pytest.mark.parametrize("body, shown", [("import sys\nsys.exit(0)\n", "SystemExit: 0"),
                                         ("raise SystemExit(3)\n", "SystemExit: 3"),
                                         ("import sys\nsys.exit('bye')\n", "SystemExit: bye")])
def test_plugin_that_exits_at_import_is_one_line_naming_it(body, shown, tmp_path):
    from test_plugins import make_distribution

    site = make_distribution(tmp_path / "site", {"quits": body},
                             {"nlbench.methods": {"quitter": "nlbench_example_plugin.quits"}})
    grid = write_toml(tmp_path / "g.toml", VALID)
    done = subprocess.run([sys.executable, "-m", "nlbench", "run", "--dry-run", "--grid", str(grid), "--results",
                           str(tmp_path / "res"), "--cache", str(tmp_path / "cache")], capture_output=True,
                          text=True, timeout=600, env={**os.environ, "PYTHONPATH": f"{site}:{ROOT}"})
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert done.stderr.startswith("nlbench: error: plug-in 'quitter' (nlbench.methods = "
                                  "'nlbench_example_plugin.quits', from nlbench-example-plugin 0.1) failed to import: "
                                  f"{shown}; fix or uninstall nlbench-example-plugin")
    assert done.stderr.count("\n") == 1 and done.stdout == ""
    assert not (tmp_path / "res").exists() and not (tmp_path / "cache").exists()


# ---------------------------------------------------------------- re-tested: file modes under another umask
def test_run_table_and_report_under_umask_027_give_every_file_and_folder_the_umask_mode(tmp_path):
    import stat

    from _subproc import nlbench_cli, wait_ok
    from test_permissions import GRID

    grid = tmp_path / "perm.toml"
    grid.write_text(GRID)
    results, cache, table = tmp_path / "runs", tmp_path / "cache", tmp_path / "out" / "table.md"
    common = ["--grid", str(grid), "--results", str(results)]
    wait_ok(nlbench_cli(["run", *common, "--cache", str(cache)], umask=0o027))
    (tmp_path / "out").mkdir(mode=0o750)
    wait_ok(nlbench_cli(["table", *common, "--output", str(table)], umask=0o027))
    wait_ok(nlbench_cli(["report", *common], umask=0o027))
    paths = [p for root in (results, cache, tmp_path / "out") for p in root.rglob("*")]
    assert any(p.suffix == ".html" for p in paths) and table.is_file() and any(p.suffix == ".npy" for p in paths)
    wrong = {str(p.relative_to(tmp_path)): oct(stat.S_IMODE(p.stat().st_mode)) for p in paths
             if stat.S_IMODE(p.stat().st_mode) != (0o750 if p.is_dir() else 0o640)}
    assert wrong == {}


# ---------------------------------------------------------------- re-tested: BatchNorm and a batch of one
def test_fine_tuning_on_a_selected_set_of_one_image_is_one_clear_error(tmp_path):
    # A last batch of one is folded into the batch before (test_determinism.py); a selected training set of
    # one image has no batch before it: BatchNorm in training mode would raise a ValueError mid-cell.
    from test_dividemix import pooled_bn_backbone, tiny_trainer

    from nlbench.engine.losses import cross_entropy
    from nlbench.errors import ConfigError

    trainer = tiny_trainer(tmp_path, n_train=33, epochs=1)

    trainer._backbone_factory = pooled_bn_backbone
    with pytest.raises(ConfigError, match="CL FFT: the training set of an epoch is one image"):
        trainer.fine_tune(cross_entropy, epochs=1, index=np.array([3]), desc="CL FFT")
    fit = trainer.fine_tune(cross_entropy, epochs=1, index=np.array([3]), freeze_bn=True)  # BN in eval mode: fine
    assert np.isfinite(fit.test_acc_last)
    fit = trainer.fine_tune(cross_entropy, epochs=1, index=np.array([3, 4]))
    assert np.isfinite(fit.test_acc_last)
