"""A cell whose training did not leave chance level is marked in tables and the report, not ranked (issue 23,
point 8). Thresholds by hand: 100/C + min(50/C, 5) points — C = 10: 10 + 5 = 15; C = 100: 1 + 0.5 = 1.5;
C = 2: 50 + 5 = 55."""

from __future__ import annotations

import pandas as pd
import pytest

from nlbench.report.leaderboard import table_frame
from nlbench.report.page import leaderboard_section, report_frame
from nlbench.report.tables import at_chance, chance_threshold, render, render_frame


def rec(mode, method, seed, acc, classes=10, params=None, train=None):
    return {"mode": mode, "method": method, "backbone": "bb", "dataset": "d", "noise": "sym", "rate": 0.6,
            "seed": seed, "method_tag": None, "test_acc_best": acc, "test_acc_last": acc, "val_acc_best": acc,
            "cost": {"wall_s": 1.0}, "selection": [],
            "noise_audit": {"realized_rate": 0.6, "transition": [[0.0] * classes for _ in range(classes)]},
            "config": {"method_params": params or {}, "train": train or {}}}


def test_threshold_by_hand():
    assert chance_threshold(10) == 15.0 and chance_threshold(100) == 1.5 and chance_threshold(2) == 55.0
    assert at_chance(15.0, 10) and not at_chance(15.01, 10) and at_chance(1.4, 100) and not at_chance(2.0, 100)
    assert not at_chance(5.0, None) and not at_chance(5.0, float("nan"))


RECORDS = [
    rec("fft", "coteaching_plus", 0, 10.0), rec("fft", "coteaching_plus", 1, 9.7),  # mean 9.85: at chance
    rec("fft", "ce", 0, 12.0), rec("fft", "ce", 1, 20.0),                             # mean 16.0: above 15
    rec("lp", "gce", 0, 14.0),                                                       # at chance, no known cause
]


def test_markdown_marks_chance_cells_and_does_not_rank_them():
    text = render(RECORDS, fmt="markdown")
    lines = text.splitlines()
    cells = {ln.split("|")[1].strip(): ln.split("|")[2].strip() for ln in lines[2:5]}
    assert cells == {"FFT CE": "**16.00±5.66**", "FFT CoT+": "9.85±0.21†", "LP GCE": "14.00†"}
    note = lines[-1]
    assert note.startswith("† training did not leave chance level") and "not ranked" in note
    # The known cause: Co-teaching+'s code loss under the engine's SGD (the default fft optimiser).
    assert "FFT CoT+: Co-teaching+'s code loss" in note and "LP GCE:" not in note


def test_no_known_cause_with_the_papers_loss_or_adam():
    records = [rec("fft", "coteaching_plus", 0, 10.0, params={"loss_input": "logits"}),
               rec("fft", "coteaching_plus", 0, 10.0, train={"fft_optimizer": "adamw"})]
    for r in records:
        note = render([r], fmt="markdown").splitlines()[-1]
        assert note.startswith("†") and "Co-teaching+'s code loss" not in note


def test_latex_and_a_frame_of_the_results_mark_too():
    assert "9.85 $\\pm$ 0.21$^\\dagger$" in render(RECORDS, fmt="latex")
    frame = pd.DataFrame([{"mode": r["mode"], "method_key": r["method"], "backbone": "bb", "dataset": "d",
                           "noise": "sym", "rate": 0.6, "seed": r["seed"], "test_acc_best": r["test_acc_best"],
                           "test_acc_last": r["test_acc_last"], "realized_rate": 0.6, "num_classes": 10.0}
                          for r in RECORDS])
    text = render_frame(table_frame(frame, "test_acc_best"))
    assert "9.85±0.21†" in text and "**16.00±5.66**" in text and "FFT CoT+: Co-teaching+'s code loss" in text


@pytest.mark.parametrize("classes, marked", [(10, True), (100, False)])
def test_the_report_page_marks_the_cell(classes, marked):
    section = leaderboard_section(report_frame([rec("lp", "gce", 0, 14.0, classes=classes)]))
    cell = section.tables[0].rows[0][1][0]
    assert cell.text.endswith("†") is marked
    assert ("did not leave chance level" in cell.title) is marked
