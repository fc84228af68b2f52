"""The disagreement of a pair method's two networks (issue 23, point 3): a table metric, a column of
``nlbench.results`` and a table of the report page. Values by hand from the records' ``extra.pair_disagreement``
(per epoch, None where no pair sample was noted)."""

from __future__ import annotations

import math

from nlbench.report.page import report_frame, selection_section
from nlbench.report.tables import render
from nlbench.run.frames import results_frame


def rec(method, seed, shares):
    return {"mode": "lp", "method": method, "backbone": "bb", "dataset": "d", "noise": "sym", "rate": 0.6,
            "seed": seed, "method_tag": None, "test_acc_best": 80.0, "test_acc_last": 80.0, "val_acc_best": 80.0,
            "best_epoch": 0, "history": [], "cost": {"wall_s": 1.0}, "selection": [],
            "noise_audit": {"realized_rate": 0.54, "transition": [[0.1] * 10 for _ in range(10)]},
            "config": {"method_params": {}, "train": {}},
            "extra": {} if shares is None else {"pair_disagreement": shares}}


RECORDS = [rec("coteaching", 0, [0.6, 0.25, None]), rec("coteaching", 1, [0.5, 0.35]),
           rec("ce", 0, None)]


def test_the_table_shows_the_last_noted_epoch_and_ranks_nothing():
    # Co-teaching: last noted shares 0.25 and 0.35 → 30.00 ± 7.07 (%); CE has one network: no value.
    text = render(RECORDS, fmt="markdown", metric="pair_disagreement")
    cells = {ln.split("|")[1].strip(): ln.split("|")[2].strip() for ln in text.splitlines()[2:4]}
    assert cells["LP CoT"] == "30.00±7.07"
    assert "**" not in text  # a diagnostic: no best cell


def test_the_results_frame_has_the_column():
    frame = results_frame(RECORDS)
    assert list(frame["pair_disagreement"][:2]) == [25.0, 35.0] and math.isnan(frame["pair_disagreement"][2])


def test_the_report_shows_first_and_last_epoch(tmp_path):
    section = selection_section(report_frame(RECORDS), tmp_path)
    table = next(t for t in section.tables if t.caption.startswith("pair disagreement"))
    (row, cells), = table.rows
    # first epochs 60 and 50 → 55.0 ± 7.1; last 25 and 35 → 30.0 ± 7.1
    assert row == "LP CoT" and cells[0].text == "55.0 ± 7.1 → 30.0 ± 7.1"
