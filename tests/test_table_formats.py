"""Every table format read by the program that reads it: LaTeX compiled by pdflatex, CSV by pandas,
markdown by a CommonMark/GFM parser. The records carry names that need escaping in LaTeX."""

from __future__ import annotations

import io
import math
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from markdown_it import MarkdownIt

from nlbench.report.tables import render

# Backbone, tag and method names with every character LaTeX treats specially.
ODD_BACKBONE = "my_net & co #2 (50% {x} ~y^z $5 \\ a@b)"
ODD_TAG = "long_v2"
ODD_METHOD = "my_loss"


def rec(mode, method, noise, rate, seed, acc, *, last=None, backbone=ODD_BACKBONE, tag=None, dataset="d",
        realized=0.5):
    return {"mode": mode, "method": method, "method_tag": tag, "backbone": backbone, "dataset": dataset,
            "noise": noise, "rate": rate, "seed": seed, "test_acc_best": acc,
            "test_acc_last": acc if last is None else last, "val_acc_best": acc, "cost": {"wall_s": 1.0},
            "noise_audit": {"realized_rate": realized}, "selection": []}


# Two seeds of three rows at sym 0.6 (mean ± std), one seed elsewhere; a tagged variant; an unregistered
# method; FFT CE@long_v2 has no asym cell.
TABLE1 = [
    rec("fft", "ce", "sym", 0.6, 0, 50.0), rec("fft", "ce", "sym", 0.6, 1, 54.0),
    rec("fft", "ce", "sym", 0.6, 0, 41.0, tag=ODD_TAG),
    rec("lp", "gce", "sym", 0.6, 0, 60.0), rec("lp", "gce", "sym", 0.6, 1, 62.0),
    rec("lp", ODD_METHOD, "sym", 0.6, 0, 58.5),
    rec("lp-fft", "turn", "sym", 0.6, 0, 70.0), rec("lp-fft", "turn", "sym", 0.6, 1, 74.0),
    rec("lp", "gce", "asym", 0.4, 0, 40.0, realized=0.4), rec("fft", "ce", "asym", 0.4, 0, 30.0, realized=0.4),
    rec("lp", ODD_METHOD, "asym", 0.4, 0, 35.25, realized=0.4),
    rec("lp-fft", "turn", "asym", 0.4, 0, 45.0, realized=0.4),
]
SINGLE_SEED = [r for r in TABLE1 if r["seed"] == 0]
REAL = [rec("lp", "ce", "none", 0.0, 0, 67.83, last=67.54), rec("fft", "ce", "none", 0.0, 0, 70.0, last=69.0),
        rec("lp", "ce", "none", 0.0, 0, 60.0, last=59.5, backbone="vit_b16"),
        rec("lp-fft", "turn", "none", 0.0, 0, 75.5, last=75.0, backbone="vit_b16", tag=ODD_TAG)]
PAPER = [rec("fft", "ce", "sym", 0.6, 0, 80.0, backbone="vit_b16", dataset="cifar100"),
         rec("lp-fft", "turn", "inst", 0.4, 0, 85.0, backbone="vit_b16", dataset="cifar100"),
         rec("lp", "ce", "sym", 0.6, 0, 81.0, backbone=ODD_BACKBONE, dataset="cifar100")]

LATEX_LAYOUTS = {
    "table1": dict(records=SINGLE_SEED),
    "mean_std": dict(records=TABLE1),
    "real_best_last": dict(records=REAL, layout="real"),
    "paper": dict(records=PAPER, paper=True),
    "realized": dict(records=TABLE1, realized=True),
    "time": dict(records=TABLE1, metric="time"),
}


def _latex(case: dict) -> str:
    kwargs = {k: v for k, v in case.items() if k != "records"}
    return render(case["records"], fmt="latex", **kwargs)


def _pdflatex(tmp_path: Path, tabular: str) -> subprocess.CompletedProcess:
    (tmp_path / "table.tex").write_text(
        "\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n" + tabular + "\n\\end{document}\n")
    return subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "table.tex"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(shutil.which("pdflatex") is None,
                    reason="pdflatex not installed (Debian: texlive-latex-base texlive-latex-recommended; "
                           ".ci/run installs them)")
@pytest.mark.parametrize("layout", list(LATEX_LAYOUTS))
def test_every_latex_layout_compiles_with_pdflatex(tmp_path: Path, layout: str) -> None:
    tabular = _latex(LATEX_LAYOUTS[layout])
    done = _pdflatex(tmp_path, tabular)
    assert done.returncode == 0, f"pdflatex failed on the {layout} layout:\n{tabular}\n{done.stdout[-3000:]}"
    assert (tmp_path / "table.pdf").stat().st_size > 0
    assert "Missing character" not in (tmp_path / "table.log").read_text(errors="replace")


def test_latex_escapes_names_and_has_no_empty_header_row() -> None:
    text = _latex(LATEX_LAYOUTS["mean_std"])
    # pandas' escaper: each special character once, as the LaTeX command that prints it
    escaped = ("my\\_net \\& co \\#2 (50\\% \\{x\\} \\textasciitilde y\\textasciicircum z \\$5 "
               "\\textbackslash \\space a@b)")
    assert escaped in text
    assert "FFT CE@long\\_v2" in text and "LP my\\_loss" in text
    rows = [line for line in text.splitlines() if line.endswith("\\\\")]
    for line in rows:  # no row of a label and nothing else (the old stray "method & & & \\")
        cells = [c.strip() for c in line[:-2].split(" & ")]
        assert any(cells[1:]), line
    assert rows[1].startswith("method & sym 0.6 & asym 0.4")  # the index name heads the label column
    assert "\\textbf{72.00 $\\pm$ 2.83}" in text and "--" in text and "–" not in text


def test_latex_real_layout_heads_the_backbone_column() -> None:
    text = _latex(LATEX_LAYOUTS["real_best_last"])
    assert "backbone & LP CE & FFT CE & LP-FFT TURN@long\\_v2 \\\\" in text
    assert "vit\\_b16 & 60.00 / 59.50 & -- & 75.50 / 75.00 \\\\" in text


def test_csv_reads_back_with_the_same_values() -> None:
    frame = pd.read_csv(io.StringIO(render(TABLE1, fmt="csv")), index_col=0)
    assert list(frame.index) == ["FFT CE", f"FFT CE@{ODD_TAG}", "LP GCE", f"LP {ODD_METHOD}", "LP-FFT TURN"]
    assert list(frame.columns) == [f"{ODD_BACKBONE} / sym 0.6", f"{ODD_BACKBONE} / asym 0.4"]
    sym, asym = frame.columns
    # mean ± sample std of two seeds, by hand: (50, 54) -> 52.00 ± 2.83; (60, 62) -> 61.00 ± 1.41
    assert frame.loc["FFT CE", sym] == "52.00±2.83" and frame.loc["LP GCE", sym] == "61.00±1.41"
    assert frame.loc["LP-FFT TURN", sym] == "72.00±2.83"
    assert frame.loc[f"LP {ODD_METHOD}", sym] == "58.50"
    assert float(frame.loc[f"LP {ODD_METHOD}", asym]) == 35.25
    assert float(frame.loc["LP-FFT TURN", asym]) == 45.0
    assert math.isnan(frame.loc[f"FFT CE@{ODD_TAG}", asym])  # no record: an empty field, read as NaN


def test_csv_single_seed_columns_are_numbers() -> None:
    frame = pd.read_csv(io.StringIO(render(SINGLE_SEED, fmt="csv")), index_col=0)
    assert all(frame[c].dtype.kind == "f" for c in frame.columns)
    expected = {(("fft", "ce", None), "sym"): 50.0, (("lp", ODD_METHOD, None), "asym"): 35.25}
    got = {(("fft", "ce", None), "sym"): frame.iloc[0, 0], (("lp", ODD_METHOD, None), "asym"): frame.iloc[3, 1]}
    assert got == expected


def _markdown_table(text: str) -> tuple[list[str], list[list[str]], set[str]]:
    """(header cells, body rows, cells rendered bold) of the one table in ``text``, as a GFM parser sees it."""
    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    kinds = [t.type for t in tokens]
    assert kinds.count("table_open") == 1, kinds
    header, rows, bold, row, in_head = [], [], set(), None, False
    for t in tokens:
        if t.type == "thead_open":
            in_head = True
        elif t.type == "thead_close":
            in_head = False
        elif t.type == "tr_open":
            row = []
        elif t.type == "tr_close":
            (header.extend(row) if in_head else rows.append(row))
        elif t.type == "inline" and row is not None:
            row.append(t.content)
            if any(c.type == "strong_open" for c in t.children or []):
                bold.add(re.sub(r"\*\*", "", t.content))
    return header, rows, bold


def test_markdown_parses_as_one_table_with_every_row() -> None:
    header, rows, bold = _markdown_table(render(TABLE1, fmt="markdown"))
    assert header == ["method", "sym 0.6", "asym 0.4"]
    assert [r[0] for r in rows] == ["FFT CE", f"FFT CE@{ODD_TAG}", "LP GCE", f"LP {ODD_METHOD}", "LP-FFT TURN"]
    assert all(len(r) == len(header) for r in rows)
    assert rows[0][1:] == ["52.00±2.83", "30.00"] and rows[1][1:] == ["41.00", "–"]
    assert bold == {"72.00±2.83", "45.00"}  # the best of each column


def test_markdown_real_layout_parses() -> None:
    header, rows, _ = _markdown_table(render(REAL, layout="real", fmt="markdown"))
    assert header == ["backbone", "LP CE", "FFT CE", f"LP-FFT TURN@{ODD_TAG}"]
    assert rows == [[ODD_BACKBONE, "67.83 / 67.54", "70.00 / 69.00", "–"],
                    ["vit_b16", "60.00 / 59.50", "–", "75.50 / 75.00"]]
