"""``nlbench report``: the page and its figures from records written in the runner's format."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from _report_records import write_records

from nlbench.cli.main import main
from nlbench.engine.distortion import load_test_features
from nlbench.engine.features import FeatureCache
from nlbench.report.tables import paper_results, paper_value
from nlbench.run.grids import expand, load_grid
from nlbench.run.layout import finetuned_features_path
from nlbench.run.records import load_records

CIFAR_METHODS = [{"method": "ce", "mode": "fft"}, {"method": "ce", "mode": "lp"},
                 {"method": "dividemix", "mode": "lp"}, {"method": "turn", "mode": "lp-fft"}]
CIFAR_NOISE = [{"model": "sym", "rate": 0.2}, {"model": "sym", "rate": 0.6}, {"model": "asym", "rate": 0.4}]


@pytest.fixture
def cifar_grid(write_grid):
    return write_grid("cifar", datasets=["cifar100"], backbones=["vit_b16"], noise=CIFAR_NOISE,
                      methods=CIFAR_METHODS, seeds=(0, 1), train={"save_finetuned_features": True})


def _report(grid: str, results: Path, out: Path, capsys) -> str:
    assert main(["report", "--grid", grid, "--results", str(results), "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    return (out / "index.html").read_text()


def test_report_writes_page_and_every_figure_as_png_and_pdf(cifar_grid, tmp_path, capsys):
    write_records(cifar_grid, tmp_path / "runs")
    page = _report(cifar_grid, tmp_path / "runs", tmp_path / "out", capsys)
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert {Path(s).stem for s in sources} == {"critical_difference", "curves", "selection", "transition", "cost",
                                               "tsne"}
    for src in sources:
        png = tmp_path / "out" / src
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert png.with_suffix(".pdf").read_bytes()[:5] == b"%PDF-"
        assert f'href="{Path(src).with_suffix(".pdf")}"' in page
    assert "http://" not in page and "https://" not in page and "<script" not in page  # self-contained, static
    for section in ("leaderboard", "paper", "ranks", "memorisation", "selection", "cost", "distortion"):
        assert f'<section id="{section}">' in page


def test_paper_delta_per_cell_and_cells_without_a_paper_number(cifar_grid, tmp_path, capsys):
    records = write_records(cifar_grid, tmp_path / "runs", features=False)
    page = _report(cifar_grid, tmp_path / "runs", tmp_path / "out", capsys)
    # FFT CE at sym 0.6 on ViT-B/16: the paper's 88.45 (nlbench/data/paper_results.csv).
    ours = [r["test_acc_best"] for r in records if (r["mode"], r["method"], r["noise"], r["rate"]) ==
            ("fft", "ce", "sym", 0.6)]
    paper = paper_value(paper_results(), dataset="cifar100", backbone="vit_b16", noise="sym", rate=0.6, mode="fft",
                        method="ce", metric="test_acc_best")
    assert paper == 88.45 and len(ours) == 2
    expected = f"{np.mean(ours) - paper:+.2f}<br><small>{np.mean(ours):.2f} ± {np.std(ours, ddof=1):.2f} vs 88.45"
    assert expected in page
    # The paper has no sym 0.2 column: 4 method rows say so, each once.
    assert page.count("no paper number<br>") == 4


def test_grid_without_paper_numbers_says_so(write_grid, tmp_path, capsys):
    grid = write_grid("digits", methods=[{"method": "ce", "mode": "lp"}, {"method": "gce", "mode": "lp"}])
    write_records(grid, tmp_path / "runs")
    page = _report(grid, tmp_path / "runs", tmp_path / "out", capsys)
    assert "reports no number for any cell of this grid" in page
    # Two methods: no Friedman test, and the page says why; no fine-tuning features either.
    assert "at least 3 methods" in page
    assert "save_finetuned_features" in page


def test_memorisation_table_is_best_minus_last(cifar_grid, tmp_path, capsys):
    records = write_records(cifar_grid, tmp_path / "runs", features=False)
    page = _report(cifar_grid, tmp_path / "runs", tmp_path / "out", capsys)
    gaps = [r["test_acc_best"] - r["test_acc_last"] for r in records
            if (r["mode"], r["method"], r["noise"], r["rate"]) == ("fft", "ce", "asym", 0.4)]
    assert f"{np.mean(gaps):.2f} ± {np.std(gaps, ddof=1):.2f}</td>" in page


def test_stale_feature_files_are_ignored(cifar_grid, tmp_path, capsys):
    write_records(cifar_grid, tmp_path / "runs")
    for spec in expand(load_grid(cifar_grid)):
        path = finetuned_features_path(tmp_path / "runs", spec)
        if path.exists():
            data = dict(np.load(path))
            np.savez(path, **{**data, "config_hash": np.array("stale")})
    page = _report(cifar_grid, tmp_path / "runs", tmp_path / "out", capsys)
    assert "tsne" not in page and "No fine-tuning cell of this grid saved its test features" in page


def test_bad_input_is_one_line_and_writes_nothing(cifar_grid, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["report", "--grid", cifar_grid, "--results", str(tmp_path / "empty"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nlbench: error: no finished records") and err.count("\n") == 1
    assert not out.exists()
    write_records(cifar_grid, tmp_path / "runs")
    a_file = tmp_path / "file.html"
    a_file.write_text("x")
    assert main(["report", "--grid", cifar_grid, "--results", str(tmp_path / "runs"), "--out", str(a_file)]) == 2
    assert "is a file; expected a folder" in capsys.readouterr().err and a_file.read_text() == "x"
    assert main(["report", "--grid", "no_such_grid", "--out", str(out)]) == 2
    assert main(["report", "--grid", cifar_grid, "--results", str(tmp_path / "runs"), "--out", str(out),
                 "--screenshot", str(tmp_path / "s.png"), "--screenshot-width", "0"]) == 2
    assert "--screenshot-width 0" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.slow
def test_finetuned_features_saved_by_a_real_fft_cell(write_grid, tmp_path):
    """One real fine-tuning cell with the grid's flag on: the test features after fine-tuning, the cached
    pre-trained ones and the clean labels land beside the record; the flag off keeps old config hashes."""
    from nlbench.engine.identity import cell_feature_key
    from nlbench.run.runner import run_grid

    grid_path = write_grid("ft", methods=[{"method": "ce", "mode": "fft"}], train={"save_finetuned_features": True})
    grid = load_grid(grid_path)
    run_grid(grid, results=tmp_path / "runs", cache=tmp_path / "cache", log=lambda _: None)
    (spec,) = expand(grid)
    (record,) = load_records(tmp_path / "runs", [spec])
    saved = load_test_features(finetuned_features_path(tmp_path / "runs", spec))
    from nlbench.datasets import load_dataset

    dataset = load_dataset("digits")
    cached = FeatureCache(tmp_path / "cache").load(cell_feature_key(spec, dataset)("test", 0), len(dataset.test))
    assert saved.config_hash == record["config_hash"]
    assert np.array_equal(saved.labels, dataset.test.labels)
    assert np.array_equal(saved.before, cached)
    assert saved.after.shape == saved.before.shape and not np.allclose(saved.after, saved.before)
    assert record["config"]["train"]["save_finetuned_features"] is True

    # The flag is part of a fine-tuning cell's identity; a cell that only probes never reads it.
    def first_cell(mode: str, **train):
        methods = [{"method": "ce", "mode": mode}]
        return expand(load_grid(write_grid(f"flag_{mode}_{len(train)}_{train.get('save_finetuned_features')}",
                                           methods=methods, train=train)))[0]

    off, default, on = (first_cell("fft", save_finetuned_features=False), first_cell("fft"),
                        first_cell("fft", save_finetuned_features=True))
    assert off.config_hash == default.config_hash != on.config_hash
    assert first_cell("lp").config_hash == first_cell("lp", save_finetuned_features=True).config_hash
