"""Leaderboards in the paper's layout, checked against hand-computed means and stds."""

from __future__ import annotations

import pytest

from nlbench.errors import ConfigError
from nlbench.report.tables import render


def rec(mode, method, noise, rate, seed, acc, last=None, backbone="bb"):
    return {"mode": mode, "method": method, "backbone": backbone, "dataset": "d", "noise": noise, "rate": rate,
            "seed": seed, "test_acc_best": acc, "test_acc_last": acc if last is None else last,
            "val_acc_best": acc, "cost": {"wall_s": 1.0}, "noise_audit": {"realized_rate": 0.5},
            "selection": []}


RECORDS = [
    rec("fft", "ce", "sym", 0.6, 0, 50.0), rec("fft", "ce", "sym", 0.6, 1, 54.0),
    rec("lp", "gce", "sym", 0.6, 0, 60.0), rec("lp", "gce", "sym", 0.6, 1, 62.0),
    rec("lp-fft", "turn", "sym", 0.6, 0, 70.0), rec("lp-fft", "turn", "sym", 0.6, 1, 74.0),
    rec("lp", "gce", "asym", 0.4, 0, 40.0),
]


def test_markdown_mean_std_bold_and_row_order():
    text = render(RECORDS, fmt="markdown")
    lines = text.splitlines()
    rows = [ln.split("|")[1].strip() for ln in lines[2:]]
    assert rows == ["FFT CE", "LP GCE", "LP-FFT TURN"]
    # mean ± sample std: (50, 54) -> 52.00 ± 2.83 ; (70, 74) -> 72.00 ± 2.83 (best: bold)
    assert "52.00±2.83" in lines[2]
    assert "**72.00±2.83**" in lines[4]
    assert "61.00±1.41" in lines[3] and "**40.00**" in lines[3]  # a single seed: no std
    assert lines[2].rstrip("|").split("|")[-1].strip() == "–"  # FFT CE has no asym cell
    assert lines[0].index("sym 0.6") < lines[0].index("asym 0.4")


def test_latex_uses_booktabs_and_textbf():
    text = render(RECORDS, fmt="latex")
    assert "\\toprule" in text and "\\midrule" in text and "\\bottomrule" in text
    assert "\\textbf{72.00 $\\pm$ 2.83}" in text


def test_real_noise_layout_shows_best_and_last():
    records = [rec("lp", "ce", "none", 0.0, 0, 67.83, last=67.54), rec("fft", "ce", "none", 0.0, 0, 70.0, last=69.0)]
    text = render(records, layout="real", fmt="markdown")
    assert "67.83 / 67.54" in text and "70.00 / 69.00" in text
    header = text.splitlines()[0]
    assert header.index("LP CE") < header.index("FFT CE")


def test_time_metric_bolds_the_smallest():
    records = [rec("lp", "ce", "sym", 0.6, 0, 1.0), rec("fft", "ce", "sym", 0.6, 0, 1.0)]
    records[0]["cost"] = {"wall_s": 2.0}
    records[1]["cost"] = {"wall_s": 30.0}
    text = render(records, metric="time")
    assert "**2.00**" in text and "**30.00**" not in text


def test_bad_format_and_empty_records():
    with pytest.raises(ConfigError, match="unknown format 'html'"):
        render(RECORDS, fmt="html")
    with pytest.raises(ConfigError, match="no finished records"):
        render([], fmt="markdown")


def test_paper_numbers_next_to_ours():
    records = [rec("fft", "ce", "sym", 0.6, 0, 80.0, backbone="vit_b16"),
               rec("lp-fft", "turn", "inst", 0.4, 0, 85.0, backbone="vit_b16")]
    for r in records:
        r["dataset"] = "cifar100"
    text = render(records, paper=True)
    # paper_results.csv: table1_cifar100, vit_b16, FFT CE sym 0.6 = 88.45; LP-FFT TURN inst 0.4 = 87.57
    assert "**80.00** (88.45)" in text and "**85.00** (87.57)" in text
    # no paper value for a dataset the paper does not have
    assert "(" not in render(RECORDS, paper=True).split("\n", 2)[2]


def test_settings_are_grouped_and_ordered_by_their_numbers():
    # Rates that sort differently as text ("sym 1e-05" after "sym 0.5") and as numbers; asym after sym.
    records = [rec("lp", "ce", "asym", 0.2, 0, 10.0), rec("lp", "ce", "sym", 0.5, 0, 20.0),
               rec("lp", "ce", "sym", 1e-05, 0, 30.0), rec("lp", "ce", "sym", 0.25, 0, 40.0)]
    header, _, row = render(records).splitlines()
    labels = [c.strip() for c in header.strip("|").split("|")[1:]]
    assert labels == ["sym 1e-05", "sym 0.25", "sym 0.5", "asym 0.2"]
    assert [c.strip() for c in row.strip("|").split("|")[1:]] == ["**30.00**", "**40.00**", "**20.00**", "**10.00**"]


def test_rates_that_print_alike_stay_apart_and_real_noise_is_one_column():
    records = [rec("lp", "ce", "sym", 0.3, 0, 10.0), rec("lp", "ce", "sym", 0.30000001, 0, 20.0),
               rec("lp", "ce", "none", 0.0, 0, 30.0), rec("lp", "ce", "none", 0.2, 1, 34.0)]
    header, _, row = render(records).splitlines()
    assert [c.strip() for c in header.strip("|").split("|")[1:]] == ["sym 0.3", "sym 0.30000001", "real"]
    # the two real-noise records (any rate a grid gave them) are two seeds of one cell: 32 ± 2.83
    assert [c.strip() for c in row.strip("|").split("|")[1:]] == ["**10.00**", "**20.00**", "**32.00±2.83**"]
