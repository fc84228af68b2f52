"""Executors without a cluster: grouping of cells into jobs, SLURM options and sbatch flags, the dry run,
bad input, job-state parsing, and concurrent writers of records and of the submission state."""

from __future__ import annotations

import json
import multiprocessing
import os
from dataclasses import replace
from pathlib import Path

import pytest
from _records import record_of

from nlbench.cli.main import main
from nlbench.errors import ConfigError
from nlbench.run.executors import (
    SlurmOptions,
    check_time_limit,
    extra_parameters,
    group_cells,
    make_executor,
    resolve_slurm_options,
    sbatch_preview,
)
from nlbench.run.grids import CellSpec, expand, load_grid
from nlbench.run.records import read_record, record_path, write_record
from nlbench.run.status import SubmissionState, _expand, _parse


@pytest.fixture(autouse=True)
def no_user_slurm_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests must not read the SLURM config of whoever runs them."""
    monkeypatch.setenv("NLBENCH_SLURM_CONFIG", str(tmp_path / "no-user-config.toml"))


def cell(method: str, mode: str, *, backbone: str = "clip_vit_b16", dataset: str = "d1", seed: int = 0,
         input_size: int | None = 32, tag: str | None = None) -> CellSpec:
    return CellSpec(grid="g", dataset=dataset, backbone=backbone, noise="sym", rate=0.4, method=method, mode=mode,
                    seed=seed, backbone_tag=tag, train={"input_size": input_size, "fft_batch_size": 64})


# --------------------------------------------------------------------------------------- grouping
def test_lp_cells_sharing_features_form_one_job_and_every_other_cell_is_alone() -> None:
    cells = [
        cell("ce", "lp"), cell("ce", "fft"), cell("gce", "lp", seed=1), cell("turn", "lp-fft"),
        cell("ce", "lp", backbone="resnet50"), cell("elr", "lp"), cell("ce", "lp", input_size=64),
        cell("ce", "lp", tag="laion2b_s34b_b88k"), cell("ce", "lp", dataset="d2"),
        cell("gce", "lp", backbone="resnet50"), cell("gce", "lp", tag="openai", seed=2),
    ]
    groups = group_cells(cells)
    got = [(g.kind, [cells.index(c) for c in g.cells]) for g in groups]
    assert got == [
        ("lp", [0, 2, 5, 10]),  # CLIP/d1 at 32 px: four probes, one feature cache entry (openai is the default tag)
        ("cell", [1]),  # FFT
        ("cell", [3]),  # LP→FFT fine-tunes: alone
        ("lp", [4, 9]),  # another backbone
        ("lp", [6]),  # another input size: other features
        ("lp", [7]),  # another checkpoint tag
        ("lp", [8]),  # another dataset
    ]
    assert sorted(i for _, ids in got for i in ids) == list(range(len(cells)))  # every cell exactly once


def test_quickstart_slurm_grid_is_three_jobs_of_four_cells() -> None:
    cells = expand(load_grid("quickstart_slurm"))
    groups = group_cells(cells)
    assert len(cells) == 4
    assert [(g.kind, len(g.cells)) for g in groups] == [("lp", 2), ("cell", 1), ("cell", 1)]


# ---------------------------------------------------------------------------------- slurm options
def test_options_command_line_beats_grid_beats_user_file(tmp_path: Path) -> None:
    user = tmp_path / "slurm.toml"
    user.write_text('[slurm]\naccount = "lab"\npartition = "cpu"\ntime_min = 30\nextra = ["--constraint=a100"]\n')
    grid_file = tmp_path / "g.toml"
    grid_file.write_text((Path(__file__).parents[1] / "benchmarks/grids/quickstart_slurm.toml").read_text()
                         .replace("time_min = 15", 'time_min = 20\npartition = "gpu"\nqos = "high"'))
    grid = load_grid(str(grid_file))
    options = resolve_slurm_options(grid, {"qos": "low", "gpus": 2, "extra": ("--exclusive",), "mem_gb": None},
                                    config_file=user)
    assert options.account == "lab"  # only in the user file
    assert options.partition == "gpu" and options.time_min == 20  # grid over user file
    assert options.qos == "low" and options.gpus == 2  # command line over grid
    assert options.cpus_per_task == 1 and options.mem_gb is None
    assert options.extra == ("--constraint=a100", "--exclusive")  # command-line flags add to the file's
    params = options.submitit_parameters("nlbench-x")
    assert params["slurm_additional_parameters"] == {"constraint": "a100", "exclusive": True}
    assert params["timeout_min"] == 20 and params["gpus_per_node"] == 2 and params["slurm_account"] == "lab"


def test_user_config_from_environment_and_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_slurm_options() == SlurmOptions()
    (tmp_path / "site.toml").write_text('partition = "a100"\narray_parallelism = 8\n')  # top-level keys work too
    monkeypatch.setenv("NLBENCH_SLURM_CONFIG", str(tmp_path / "site.toml"))
    options = resolve_slurm_options()
    assert (options.partition, options.array_parallelism, options.time_min) == ("a100", 8, 240)


@pytest.mark.parametrize("table, message", [
    ({"partitoin": "gpu"}, "unknown SLURM option(s) partitoin"),
    ({"time_min": 0}, "time_min must be ≥ 1"),
    ({"gpus": -1}, "gpus must be a non-negative integer"),
    ({"mem_gb": "lots"}, "mem_gb must be a positive number"),
    ({"extra": ["--output=x.log"]}, "nlbench sets --output itself"),
    ({"extra": "--array=0-3"}, "nlbench sets --array itself"),
    ({"time_min": 1, "signal_delay_s": 90}, "is not shorter than the time limit"),
    ({"setup": [3]}, "setup must be a list of strings"),
])
def test_bad_slurm_options_raise_config_error(table: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        resolve_slurm_options(None, table)


def test_extra_flags_parse() -> None:
    assert extra_parameters(["--constraint=a100", "exclusive", "--mail-type=END"]) == \
        {"constraint": "a100", "exclusive": True, "mail-type": "END"}


def test_sbatch_preview_has_the_flags_sbatch_will_get(tmp_path: Path) -> None:
    options = SlurmOptions(partition="gpu", account="lab", gpus=1, cpus_per_task=8, mem_gb=31.5, time_min=90,
                           array_parallelism=2, extra=("--constraint=a100",), setup=("module load cuda",))
    lines = sbatch_preview(options, folder=tmp_path / "logs" / "%j", name="nlbench-g", array_size=5)
    for expected in ("#SBATCH --partition=gpu", "#SBATCH --account=lab", "#SBATCH --gpus-per-node=1",
                     "#SBATCH --cpus-per-task=8", "#SBATCH --mem=32256MB", "#SBATCH --time=90",
                     "#SBATCH --array=0-4%2", "#SBATCH --signal=USR2@120", "#SBATCH --constraint=a100",
                     "#SBATCH --job-name=nlbench-g", f"#SBATCH --error={tmp_path}/logs/%A_%a/%A_%a_0_log.err"):
        assert expected in lines, (expected, lines)


def test_dry_run_shows_grouping_and_sbatch_parameters(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(["run", "--grid", "quickstart_slurm", "--results", str(tmp_path), "--cache", str(tmp_path / "c"),
                 "--executor", "slurm", "--dry-run", "--slurm-partition", "gpu", "--slurm-time", "45",
                 "--slurm-config", str(_empty(tmp_path))])
    out = capsys.readouterr().out
    assert code == 0
    assert "jobs (slurm): 3 job(s) for 4 cell(s)" in out
    assert "job 0: LP group efficientnet_lite0/digits @ 16 px: 2 cell(s)" in out
    assert "job 2: digits__efficientnet_lite0__sym0.4__fft__gce__seed0" in out
    for flag in ("--array=0-2%3", "--partition=gpu", "--time=45", "--cpus-per-task=1", "--signal=USR2@60"):
        assert f"#SBATCH {flag}" in out
    assert not (tmp_path / "quickstart_slurm").exists()  # a dry run writes nothing


def _empty(tmp_path: Path) -> Path:
    path = tmp_path / "empty.toml"
    path.write_text("")
    return path


# ------------------------------------------------------------------------------------- bad input
def test_missing_results_folder_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(["run", "--grid", "quickstart_slurm", "--results", str(tmp_path / "nope"), "--executor", "slurm"])
    err = capsys.readouterr().err
    assert code == 2
    assert f"results folder '{tmp_path / 'nope'}' does not exist" in err and "compute nodes share" in err
    assert not (tmp_path / "nope").exists()


def test_time_limit_shorter_than_a_measured_epoch_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cells = expand(load_grid("quickstart_slurm"))
    fft = cells[2]
    # A finished record of this FFT cell whose epoch took 15 minutes on the CPU (the real record format).
    record = record_of(fft, config_hash="other", env={"cuda": None})
    write_record(record_path(tmp_path, fft), replace(record, cost=replace(record.cost, fft_epoch_s=[610.0, 900.0])))
    groups = group_cells(cells)
    with pytest.raises(ConfigError, match=r"time limit 10 min leaves 9.0 min.*estimated at 15.0 min.*--slurm-time 18"):
        check_time_limit(groups, SlurmOptions(time_min=10, signal_delay_s=60), tmp_path)
    lines = check_time_limit(groups, SlurmOptions(time_min=30, signal_delay_s=60), tmp_path)
    assert any("15.0 min" in line and "usable time per job 29.0 min" in line for line in lines)
    # On a GPU no CPU record applies: no estimate, no refusal.
    assert "none yet" in check_time_limit(groups, SlurmOptions(time_min=10, gpus=1), tmp_path)[0]
    # Through the command line: exit 2, nothing submitted.
    code = main(["run", "--grid", "quickstart_slurm", "--results", str(tmp_path), "--executor", "slurm",
                 "--slurm-time", "10"])
    assert code == 2 and "requeue forever" in capsys.readouterr().err
    assert not (tmp_path / "quickstart_slurm" / "slurm" / "state.json").exists()


def test_slurm_executor_without_slurm_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigError, match="needs SLURM's sbatch, srun, squeue on PATH"):
        make_executor("slurm", tmp_path / "%j", SlurmOptions(), name="x")


# --------------------------------------------------------------------------------- job states
def test_sacct_and_squeue_lines_parse_to_one_state_per_array_task() -> None:
    text = "12_0|COMPLETED\n12_1|CANCELLED by 0\n12_[2-4,7%2]|PENDING\n15|RUNNING\n16|FAILED\n17|REQUEUED+\n"
    assert _parse(text) == {"12_0": "COMPLETED", "12_1": "CANCELLED", "12_2": "PENDING", "12_3": "PENDING",
                            "12_4": "PENDING", "12_7": "PENDING", "15": "RUNNING", "16": "FAILED", "17": "REQUEUED"}
    assert _expand("9_[0-1]") == ["9_0", "9_1"] and _expand("9_3") == ["9_3"] and _expand("9") == ["9"]


# ------------------------------------------------------------------------------ concurrent writers
def _write_records(args: tuple[str, int, int]) -> None:
    results, writer, count = args
    spec = cell("ce", "lp")
    for i in range(count):
        # Half the writes go to one shared cell (the same record written twice), half to the writer's own.
        target = replace(spec, seed=1000) if i % 2 else replace(spec, seed=writer * count + i)
        record = record_of(target, extra={"writer": writer, "i": i, "payload": [writer] * 20000})
        write_record(record_path(Path(results), target), record)


def _read_continuously(args: tuple[str, float]) -> int:
    import time

    results, seconds = args
    end, torn = time.time() + seconds, 0
    folder = Path(results) / "g" / "records"
    while time.time() < end and not (Path(results) / "writers-done").exists():
        for path in folder.glob("*.json") if folder.exists() else []:
            try:
                text = path.read_text()
            except FileNotFoundError:
                continue
            try:
                json.loads(text)
            except ValueError:
                torn += 1
    return torn


def test_many_processes_writing_records_lose_or_tear_none(tmp_path: Path) -> None:
    writers, count = 8, 20
    ctx = multiprocessing.get_context("fork")  # children only write files: no re-import
    with ctx.Pool(writers + 1) as pool:
        reader = pool.apply_async(_read_continuously, ((str(tmp_path), 60.0),))
        pool.map(_write_records, [(str(tmp_path), w, count) for w in range(writers)])
        (tmp_path / "writers-done").touch()
        torn = reader.get(timeout=90)
    assert torn == 0
    files = sorted((tmp_path / "g" / "records").glob("*.json"))
    own = writers * count // 2
    assert len(files) == own + 1  # every writer's own cells + the shared one
    for path in files:
        record = read_record(path)
        assert record is not None and len(record.extra["payload"]) == 20000
    assert not list((tmp_path / "g" / "records").glob(".*.tmp"))  # no temporary file left behind


def _submit_state(args: tuple[str, int]) -> None:
    results, writer = args
    state = SubmissionState(Path(results), "g")
    for i in range(10):
        with state.locked():  # the read-modify-write that `nlbench run` does under the lock
            state.record_submissions({f"cell{writer}_{i}": {"job_id": f"{writer}_{i}", "config_hash": "h",
                                                             "log_folder": "x"}})


def test_concurrent_submissions_keep_every_state_entry(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")  # children only write files: no re-import
    with ctx.Pool(6) as pool:
        pool.map(_submit_state, [(str(tmp_path), w) for w in range(6)])
    cells = SubmissionState(tmp_path, "g").load()
    assert len(cells) == 60 and cells["cell3_7"]["job_id"] == "3_7" and cells["cell3_7"]["submissions"] == 1


def test_state_remembers_previous_jobs_of_a_resubmitted_cell(tmp_path: Path) -> None:
    state = SubmissionState(tmp_path, "g")
    with state.locked():
        state.record_submissions({"c": {"job_id": "5_1", "config_hash": "h", "log_folder": "x"}})
        state.record_submissions({"c": {"job_id": "9", "config_hash": "h", "log_folder": "x"}})
    entry = state.load()["c"]
    assert (entry["job_id"], entry["submissions"], entry["previous_jobs"]) == ("9", 2, ["5_1"])
    assert os.stat(state.path).st_size > 0


def test_repeated_slurm_flags_from_the_command_line_reach_the_options(tmp_path, capsys):
    from nlbench.cli.main import main

    results = tmp_path / "runs"
    results.mkdir()
    assert main(["run", "--grid", "quickstart_slurm", "--executor", "slurm", "--results", str(results), "--dry-run",
                 "--slurm-extra=--constraint=a100", "--slurm-setup", "module load cuda",
                 "--slurm-setup", "nvidia-smi"]) == 0
    out = capsys.readouterr().out
    assert "extra=('--constraint=a100',)" in out and "setup=('module load cuda', 'nvidia-smi')" in out
    assert "#SBATCH --constraint=a100" in out
