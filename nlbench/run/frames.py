"""Run records as tidy pandas frames: one row per record (``results_frame``), per-epoch curves in long form
(``history_frame``). The public API (``nlbench.results``, ``nlbench.history``) and the leaderboard read these.

Records are the plain dicts of ``Record.to_dict()`` (``records.load_records``). Column names say where a value
comes from: the cell's identity as the record stores it, the results under the record's own field names,
``selection_*`` from the last selected clean set (the one ``nlbench table --metric selection_f1`` scores),
``pair_disagreement`` the last epoch's share (%) of a pair method's samples its two networks disagreed on,
cost fields under their cost names, ``params.<name>`` a method parameter, ``train.<name>`` a [train] field,
``version.<package>`` the package versions the cell ran with.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

# The cell's identity, first and in this order; then results, selection, cost, provenance.
IDENTITY_COLUMNS = ("grid", "cell_id", "dataset", "backbone", "backbone_tag", "noise", "rate", "method",
                    "method_tag", "method_key", "mode", "seed", "noise_seed", "val_labels", "config_hash")
RESULT_COLUMNS = ("test_acc_best", "test_acc_last", "val_acc_best", "best_epoch", "realized_rate", "num_classes")
SELECTION_COLUMNS = ("selection_size", "selection_precision", "selection_recall", "selection_f1",
                     "pair_disagreement")
COST_COLUMNS = ("wall_s", "peak_rss_mb", "peak_cuda_mb", "backbone_forward_images", "backbone_backward_images")
PROVENANCE_COLUMNS = ("git_commit", "python")
# Curves of ``history_frame``: the cell's identity, then where on the curve, then the value.
HISTORY_COLUMNS = ("grid", "cell_id", "dataset", "backbone", "noise", "rate", "method_key", "mode", "seed",
                   "phase", "epoch", "metric", "value")


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


def method_key(record: dict) -> str:
    """``dividemix``, or ``dividemix@long`` for a tagged variant (as tables and cell ids name it)."""
    tag = record.get("method_tag")
    return f"{record['method']}@{tag}" if tag else record["method"]


def last_selection(record: dict) -> dict:
    """The last selected clean set of a record ({} for a method that selects none)."""
    return (record.get("selection") or [{}])[-1]


def pair_disagreement_shares(record: dict) -> list[float]:
    """The shares (fractions) of the samples on which a pair method's two networks disagreed, in epoch order, of the
    epochs that noted one (``extra.pair_disagreement`` holds None for the others); empty for single networks."""
    return [float(v) for v in ((record.get("extra") or {}).get("pair_disagreement") or []) if v is not None]


def last_pair_disagreement(record: dict) -> float:
    """Share (%) of the samples on which a pair method's two networks disagreed in its last epoch that noted any
    (``extra.pair_disagreement``); NaN for single-network methods."""
    shares = pair_disagreement_shares(record)
    return 100.0 * shares[-1] if shares else math.nan


def selection_f1(selection: dict) -> float:
    """F1 (%) of a selected clean set from its precision and recall (%)."""
    p, r = selection.get("precision"), selection.get("recall")
    return 2 * p * r / (p + r) if p is not None and r is not None and p + r > 0 else math.nan


def result_row(record: dict) -> dict[str, Any]:
    """One record as one flat row (see the module docstring for the columns)."""
    config = record.get("config") or {}
    cost = record.get("cost") or {}
    env = record.get("env") or {}
    audit = record.get("noise_audit") or {}
    selection = last_selection(record)
    row: dict[str, Any] = {
        **{k: record.get(k) for k in IDENTITY_COLUMNS if k not in ("backbone_tag", "method_key", "noise_seed")},
        "backbone_tag": config.get("backbone_tag"), "method_key": method_key(record),
        # The seed of the label draw; a record from before the field drew its labels from its training seed.
        "noise_seed": config.get("noise_seed") if config.get("noise_seed") is not None else record.get("seed"),
        "test_acc_best": _number(record.get("test_acc_best")), "test_acc_last": _number(record.get("test_acc_last")),
        "val_acc_best": _number(record.get("val_acc_best")), "best_epoch": record.get("best_epoch"),
        "realized_rate": _number(audit.get("realized_rate")),
        # C, from the realized transition matrix (real noise has none): tables mark cells at chance level.
        "num_classes": _number(len(audit["transition"])) if audit.get("transition") else math.nan,
        "selection_size": _number(selection.get("size")), "selection_precision": _number(selection.get("precision")),
        "selection_recall": _number(selection.get("recall")), "selection_f1": selection_f1(selection),
        "pair_disagreement": last_pair_disagreement(record),
        **{k: _number(cost.get(k)) for k in COST_COLUMNS},
        "git_commit": env.get("git_commit"), "python": env.get("python"),
    }
    for name, value in sorted((record.get("extra_test_acc_best") or {}).items()):
        row[f"extra_test_acc_best.{name}"] = _number(value)
    for name, value in sorted((record.get("extra_test_acc_last") or {}).items()):
        row[f"extra_test_acc_last.{name}"] = _number(value)
    for name, value in sorted((config.get("method_params") or {}).items()):
        row[f"params.{name}"] = value
    for name, value in sorted((config.get("train") or {}).items()):
        row[f"train.{name}"] = value
    for name, value in sorted((env.get("versions") or {}).items()):
        row[f"version.{name}"] = value
    return row


def results_frame(records: list[dict]) -> pd.DataFrame:
    """One tidy row per record, in the records' order; the columns exist (empty) when there is no record."""
    rows = [result_row(r) for r in records]
    fixed = [*IDENTITY_COLUMNS, *RESULT_COLUMNS, *SELECTION_COLUMNS, *COST_COLUMNS, *PROVENANCE_COLUMNS]
    extra = list(dict.fromkeys(k for row in rows for k in row if k not in fixed))
    frame = pd.DataFrame(rows, columns=fixed + extra)
    if rows:
        frame["seed"] = frame["seed"].astype(int)
        frame["noise_seed"] = frame["noise_seed"].astype(int)
        frame["best_epoch"] = frame["best_epoch"].astype(int)
    return frame


def history_frame(records: list[dict]) -> pd.DataFrame:
    """Per-epoch curves in long form: one row per (record, phase, epoch, metric). ``phase`` is None for the
    training history (``train_loss``, ``val_acc``, ``test_acc``; an epoch whose test accuracy was not
    evaluated has no row for it) and the selecting network's phase for the selected clean sets
    (``selection_size``, ``selection_precision``, ``selection_recall``)."""
    rows = []
    for record in records:
        ident = {k: record.get(k) for k in HISTORY_COLUMNS[:-4] if k != "method_key"}
        ident["method_key"] = method_key(record)
        for entry in record.get("history") or []:
            for metric, value in entry.items():
                if metric in ("epoch", "phase") or isinstance(value, bool) or not isinstance(value, (int, float)):
                    continue
                rows.append({**ident, "phase": entry.get("phase"), "epoch": entry.get("epoch"), "metric": metric,
                             "value": float(value)})
        for entry in record.get("selection") or []:
            for metric in ("size", "precision", "recall"):
                if entry.get(metric) is not None:
                    rows.append({**ident, "phase": entry.get("phase"), "epoch": entry.get("epoch"),
                                 "metric": f"selection_{metric}", "value": float(entry[metric])})
    frame = pd.DataFrame(rows, columns=list(HISTORY_COLUMNS))
    if rows:
        frame["epoch"] = frame["epoch"].astype(int)
        frame["seed"] = frame["seed"].astype(int)
    return frame
