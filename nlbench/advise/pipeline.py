"""``nlbench advise``: from a folder or CSV of images with untrusted labels to the noise estimate, the suspects, a
recommended method with its estimated clean accuracy, and one page (docs/advise.md).

Order of work: every input is checked (data, trusted file, options, output folder) before anything is written;
features once per backbone (feature cache); the K-fold LP CE probe on each backbone (its out-of-fold
probabilities estimate the noise and rank the suspects); the other candidates in order while the budget's
estimate allows; then the estimates, the optional fit and the outputs (atomically).
"""

from __future__ import annotations

import csv
import io
import platform
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

from nlbench.advise import estimators as est
from nlbench.advise import issues
from nlbench.advise.data import AdviseData, load_advise_data, load_trusted
from nlbench.advise.portfolio import (
    Candidate,
    CandidateResult,
    FullFeatures,
    cached_views,
    candidate_views,
    candidates,
    estimate_seconds,
    evaluate,
    fold_ids,
    folds_to_run,
    parse_backbones,
)
from nlbench.atomic import atomic_write_bytes
from nlbench.engine.config import TrainConfig
from nlbench.errors import ConfigError
from nlbench.run.progress import format_duration

RELABEL_PROBABILITY = 0.5  # a flagged label is replaced by the suggestion at or above this probability, else dropped
BOOTSTRAP_ROUNDS = 200
GALLERY_SIZE = 24


def parse_budget(text: str) -> float:
    """'15m', '90s', '1h', '1h30m' → seconds; a bare number is minutes."""
    spec = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", spec):
        seconds = float(spec) * 60
    else:
        parts = re.findall(r"(\d+(?:\.\d+)?)\s*(h|m|s)", spec)
        if not parts or re.sub(r"(\d+(?:\.\d+)?)\s*(h|m|s)", "", spec).strip():
            raise ConfigError(f"--budget {text!r}; expected a duration such as 15m, 90s, 1h or 1h30m")
        seconds = sum(float(v) * {"h": 3600, "m": 60, "s": 1}[u] for v, u in parts)
    if seconds <= 0:
        raise ConfigError(f"--budget {text!r}; expected a positive duration")
    return seconds


@dataclass
class AdviseOptions:
    data: str
    backbones: str | None = None
    trusted: str | None = None
    budget: str = "15m"
    out: str = "advise"
    fit: bool = False
    cache: str | None = None
    folds: int = 5
    fine_tune_folds: int | None = None  # folds a fine-tuning candidate runs (default portfolio.FINE_TUNE_FOLDS)
    seed: int = 0
    input_size: int | None = None
    lp_epochs: int = 20
    detector: str | None = None
    noise_estimator: str | None = None
    progress: bool = True


class Progress:
    """Lines on stderr: what runs, elapsed time and an estimate of what remains (from the budget's cost model)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.started = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def __call__(self, message: str, remaining: float | None = None) -> None:
        if not self.enabled:
            return
        eta = "" if remaining is None else f" · ETA {format_duration(remaining)}"
        print(f"advise [{format_duration(self.elapsed())}{eta}] {message}", file=sys.stderr, flush=True)


def _versions() -> dict:
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for pkg in ("nlbench", "torch", "timm", "numpy", "scikit-learn", "cleanlab"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {str(out)!r} is a file; expected a folder (created if missing)")
    from nlbench.atomic import check_writable

    check_writable(out, "--out", "choose a folder you can write to")


def run_advise(options: AdviseOptions, *, cache: str | Path, log: Callable[[str], None] = print) -> dict:
    """Run advise; returns advice.json's content (also written under ``options.out``)."""
    progress = Progress(options.progress)
    budget_s = parse_budget(options.budget)
    if options.folds < 2:
        raise ConfigError(f"--folds {options.folds}; expected an integer ≥ 2")
    if options.fine_tune_folds is not None and not 1 <= options.fine_tune_folds <= options.folds:
        raise ConfigError(f"--fine-tune-folds {options.fine_tune_folds}; expected an integer from 1 to --folds "
                          f"({options.folds})")
    detector = options.detector or issues.DEFAULT_DETECTOR
    if detector not in issues.DETECTORS:
        raise ConfigError(f"--detector {detector!r}; expected one of: {', '.join(issues.DETECTORS)}")
    if detector == "cleanlab" and not issues.cleanlab_available():
        raise ConfigError("--detector cleanlab needs cleanlab: pip install 'nlbench[cl]' (AGPL-3.0)")
    noise_estimator = options.noise_estimator or est.DEFAULT_NOISE_ESTIMATOR
    if noise_estimator not in est.NOISE_ESTIMATORS:
        raise ConfigError(f"--noise-estimator {noise_estimator!r}; expected one of: {', '.join(est.NOISE_ESTIMATORS)}")
    backbones = parse_backbones(options.backbones, options.input_size)
    out = Path(options.out)
    _check_out(out)
    data = load_advise_data(options.data, folds=options.folds)
    trusted = load_trusted(options.trusted, data) if options.trusted else None
    # Everything is checked: from here on files are written.
    config = TrainConfig(input_size=options.input_size, lp_epochs=options.lp_epochs)
    n, c = len(data.labels), data.num_classes
    progress(f"{n} images, {c} classes, {options.folds} folds, budget {format_duration(budget_s)}")

    fulls: dict[str, FullFeatures] = {}
    for b in backbones:
        progress(f"features of {b.ref} (feature cache)")
        full = FullFeatures(b, data, cache, config, log=lambda m: progress(m))
        full.view(0)
        fulls[b.ref] = full
    folds = fold_ids(data.labels, options.folds, options.seed)

    # 1. The CE probe on every backbone: the noise estimate and the suspects come from the best of them.
    everything = candidates(backbones, cleanlab=issues.cleanlab_available())
    results: dict[str, CandidateResult] = {}
    skipped: list[dict] = []
    for b in backbones:
        cand = Candidate("ce", "lp", b)
        progress(f"{cand.name}: {options.folds}-fold probe")
        results[cand.name] = evaluate(cand, fulls[b.ref], data, folds, config=config, cache=cache,
                                      seed=options.seed, nominal_rate=0.0, log=lambda m: progress(m))
    probe_name = max((Candidate("ce", "lp", b).name for b in backbones),
                     key=lambda k: float((results[k].probs.argmax(1) == data.labels).mean()))
    probe = results[probe_name].probs
    noise = estimate_noise(data, probe, trusted, seed=options.seed, estimator=noise_estimator)
    rate = noise["rate"]["value"]

    # 2. The other candidates, in order, while the estimate of each fits the budget left.
    lp_ce = {b.ref: results[Candidate("ce", "lp", b).name].seconds for b in backbones}
    todo = [cand for cand in everything if cand.name not in results]
    planned, skipped = plan_candidates(todo, fulls, lp_ce, n=n, folds=options.folds, rate=rate,
                                       budget_left=budget_s - progress.elapsed(),
                                       fine_tune_folds=options.fine_tune_folds)
    for k, (cand, expected) in enumerate(planned):
        remaining = sum(e for _, e in planned[k:])
        progress(f"[{k + 1}/{len(planned)}] {cand.name} (expected {format_duration(expected)})", remaining)
        fold_started = time.monotonic()
        run = folds_to_run(cand, options.folds, options.fine_tune_folds)

        def fold_done(f: int, cand=cand, expected=expected, remaining=remaining, started=fold_started,
                      run=run) -> None:
            # The ETA of the rest: this candidate's folds at their measured pace, the others at their estimates.
            spent = time.monotonic() - started
            pace = spent / (f + 1) * (run - f - 1)
            progress(f"{cand.name}: fold {f + 1}/{run} done", pace + remaining - expected)

        results[cand.name] = evaluate(cand, fulls[cand.backbone.ref], data, folds, config=config, cache=cache,
                                      seed=options.seed, nominal_rate=rate, log=lambda m: progress(m),
                                      on_fold=fold_done, folds_run=run)

    # 3. Estimates, suspects, recommendation.
    portfolio = score_candidates(data, results, probe, trusted, noise, seed=options.seed)
    # Estimates clipped at a bound tie; the K-fold agreement with the given labels orders them.
    best = max(portfolio, key=lambda r: (r["clean_acc"]["value"], r["noisy_acc"]))
    suspects = rank_suspects(data, probe, noise["detector_joint"], detector, seed=options.seed)
    detectors = {d: int(issues.flag(d, data.labels, probe, np.asarray(noise["detector_joint"]), options.seed).sum())
                 for d in issues.DETECTORS if d != "cleanlab" or issues.cleanlab_available()}
    advice = {
        "data": {"source": options.data, "images": n, "classes": data.class_names,
                 "class_counts": np.bincount(data.labels, minlength=c).tolist()},
        "config": {"backbones": [b.ref for b in backbones], "folds": options.folds,
                   "fine_tune_folds": folds_to_run(Candidate("ce", "fft", backbones[0]), options.folds,
                                                   options.fine_tune_folds),
                   "seed": options.seed,
                   "budget_s": budget_s, "input_size": options.input_size, "lp_epochs": options.lp_epochs,
                   "detector": detector, "relabel_probability": RELABEL_PROBABILITY,
                   "bootstrap_rounds": BOOTSTRAP_ROUNDS, "trusted": options.trusted,
                   "trusted_labels": 0 if trusted is None else len(trusted[0])},
        "probe": probe_name,
        "noise": {k: v for k, v in noise.items() if k not in ("joint_matrix", "detector_joint")},
        "label_issues": {"detector": detector, "flagged": int(sum(s["flagged"] for s in suspects)),
                         "flagged_by_detector": detectors,
                         "cleanlab": "installed" if issues.cleanlab_available() else "not installed",
                         "relabelled": int(sum(s["action"] == "relabel" for s in suspects)),
                         "dropped": int(sum(s["action"] == "drop" for s in suspects))},
        "candidates": portfolio,
        "skipped": skipped,
        "recommendation": {"candidate": best["candidate"], "clean_acc": best["clean_acc"],
                           "unreliable": bool(noise["problems"]),
                           "at_bound": bool(best.get("at_bound")),
                           "why": "highest estimated clean accuracy" + (
                           "; that estimate is clipped at a bound (its assumption says why), so read it as a bound"
                           if best.get("at_bound") else "") + (
                           "; the noise estimate failed its consistency checks (noise.problems), so the ranking "
                           "rests on a T the data contradicts" if noise["problems"] else "")},
        "versions": _versions(),
    }
    if options.fit:
        from nlbench.advise.model import fit_and_save

        cand = next(r for r in results.values() if r.candidate.name == best["candidate"]).candidate
        progress(f"fitting {cand.name} on all {n} images")
        path = fit_and_save(cand, fulls[cand.backbone.ref], data, out, config=config, seed=options.seed,
                            nominal_rate=rate, log=lambda m: progress(m))
        advice["model"] = {"file": path.name, "load": f"from nlbench.advise import load_model; "
                                                     f"labels = load_model({str(out)!r}).predict(paths)"}
    advice["seconds"] = round(progress.elapsed(), 1)
    write_outputs(out, advice, data, suspects)
    progress(f"wrote {out / 'index.html'}, advice.json, suspects.csv, labels_cleaned.csv")
    return advice


def plan_candidates(todo: list[Candidate], fulls: dict[str, FullFeatures], lp_ce: dict[str, float], *, n: int,
                    folds: int, rate: float, budget_left: float, fine_tune_folds: int | None = None,
                    ) -> tuple[list[tuple[Candidate, float]], list[dict]]:
    """(candidates to run with their expected seconds, skipped ones with why): in order, each while its estimate
    fits what is left of the budget."""
    planned, skipped = [], []
    left = budget_left
    views = {ref: cached_views(full) for ref, full in fulls.items()}  # augmented views cached or planned
    for cand in todo:
        ref = cand.backbone.ref
        per_image = fulls[ref].seconds_per_image or 0.01
        expected = estimate_seconds(cand, lp_ce_seconds=lp_ce[ref], feature_seconds_per_image=per_image,
                                    n=n, folds=folds, noise_rate=rate, views_available=views[ref],
                                    folds_run=folds_to_run(cand, folds, fine_tune_folds))
        if expected <= left:
            planned.append((cand, expected))
            left -= expected
            views[ref] = max(views[ref], candidate_views(cand))
        else:
            skipped.append({"candidate": cand.name, "expected_s": round(expected, 1),
                            "why": f"its estimate ({format_duration(expected)}) exceeds the budget left "
                                   f"({format_duration(max(0.0, left))})"})
    return planned, skipped


def estimate_noise(data: AdviseData, probs: np.ndarray, trusted: tuple[np.ndarray, np.ndarray] | None, *,
                   seed: int, estimator: str = est.DEFAULT_NOISE_ESTIMATOR) -> dict:
    """The noise: joint, transition matrix, overall and per-class rates, confused pairs by ``estimator``
    (``nlbench.advise.estimators``); bootstrap intervals; with trusted labels the unbiased rate and the calibrated T
    beside them. The label-issue detectors keep the confident joint (``detector_joint``), which measured better at
    finding the wrong labels (results/advise.md)."""
    y = data.labels
    c = data.num_classes
    scaled, tau = est.temperature_scale(y, probs) if estimator == "anchor" else (probs, 1.0)
    joint, t = est.estimate_joint(y, probs, estimator, calibrated=scaled)
    rate = est.noise_rate(joint)
    rng = np.random.default_rng(seed)
    strata = [np.flatnonzero(y == k) for k in range(c)]
    rates, ts = [], []
    for _ in range(BOOTSTRAP_ROUNDS):
        idx = np.concatenate([g[rng.integers(0, len(g), len(g))] for g in strata if len(g)])
        q, t_b = est.estimate_joint(y[idx], probs[idx], estimator, calibrated=scaled[idx])
        rates.append(est.noise_rate(q))
        ts.append(t_b)
    lo, hi = np.quantile(rates, [0.05, 0.95])
    t_lo, t_hi = np.quantile(np.asarray(ts), [0.05, 0.95], axis=0)
    method = {
        "anchor": f"anchor points of the CE probe's out-of-fold probabilities, temperature-scaled to the given labels "
                  f"(τ = {tau:.3g}): each class's row of T is the mean prediction over its top "
                  f"{est.ANCHOR_TOP_SHARE:.0%} most confident images (Patrini et al. 2017); assumes class-conditional "
                  "noise and that those images are of that class",
        "confident-joint": "confident joint (Northcutt et al. 2021) of the CE probe's out-of-fold probabilities; "
                           "counts the probe's own mistakes as label errors, so it runs high with a weak probe",
    }[estimator]
    out = {
        "estimator": estimator,
        "method": method,
        "rate": {"value": round(rate, 4), "low": round(float(lo), 4), "high": round(float(hi), 4), "level": 0.9},
        "transition": np.round(t, 4).tolist(), "transition_low": np.round(t_lo, 4).tolist(),
        "transition_high": np.round(t_hi, 4).tolist(),
        "transition_condition": round(est.condition_number(t), 2),
        "per_class": [{"class": data.class_names[k], "labelled": int((y == k).sum()),
                       "wrong_share": round(float(v), 4)} for k, v in enumerate(est.per_class_noise(joint))],
        "confused_pairs": [{"given": data.class_names[p["given"]], "true": data.class_names[p["true"]],
                            "share": round(p["share"], 4), "count": p["count"]}
                           for p in est.confused_pairs(joint, len(y))],
        "joint_matrix": joint.tolist(),
        "detector_joint": est.calibrated_joint(y, probs).tolist(),
        "transition_used": np.round(t, 4).tolist(),
    }
    if trusted is not None:
        index, verified = trusted
        wrong = int((y[index] != verified).sum())
        tl, th = est.wilson(wrong, len(index))
        t_cal = est.trusted_transition(verified, y[index], t)
        out["trusted"] = {
            "labels": len(index),
            "rate": {"value": round(wrong / len(index), 4), "low": round(tl, 4), "high": round(th, 4), "level": 0.9},
            "rate_without_trusted": out["rate"],
            "transition": np.round(t_cal, 4).tolist(),
            "changed": "the noise rate is the trusted labels' share of wrong given labels (unbiased, Wilson interval); "
                       "T is each true class's trusted counts blended with the estimated row (20 "
                       "pseudo-counts); the clean accuracies use that T, and the trusted labels' own accuracy is "
                       "shown beside them",
        }
        out["rate"] = out["trusted"]["rate"]
        out["transition_used"] = out["trusted"]["transition"]
    out["problems"] = est.consistency_problems(np.asarray(out["transition_used"]), y, probs.argmax(1),
                                               data.class_names)
    return out


def score_candidates(data: AdviseData, results: dict[str, CandidateResult], probe: np.ndarray,
                     trusted: tuple[np.ndarray, np.ndarray] | None, noise: dict, *, seed: int) -> list[dict]:
    """Each candidate's noisy-label K-fold accuracy and estimated clean accuracy (T⁻ᵀN) with a bootstrap interval
    (T re-estimated in every round unless trusted labels fixed it); with trusted labels the estimate is their
    direct accuracy, and T⁻ᵀN (calibrated T) is kept as ``clean_acc_transition``. A candidate that ran some of the
    folds (``CandidateResult.scored``) is scored on the images of those folds, in every bootstrap round too."""
    y = data.labels
    c = data.num_classes
    t_used = np.asarray(noise["transition_used"])
    estimator = noise.get("estimator", est.DEFAULT_NOISE_ESTIMATOR)
    scaled = est.temperature_scale(y, probe)[0] if estimator == "anchor" and trusted is None else probe
    preds = {k: np.nan_to_num(r.probs, nan=0.0).argmax(1) for k, r in results.items()}
    scored = {k: r.scored for k, r in results.items()}
    rng = np.random.default_rng(seed + 1)
    strata = [np.flatnonzero(y == k) for k in range(c)]
    draws: dict[str, list[float]] = {k: [] for k in results}
    for _ in range(BOOTSTRAP_ROUNDS):
        idx = np.concatenate([g[rng.integers(0, len(g), len(g))] for g in strata if len(g)])
        t_b = t_used if trusted is not None else est.estimate_joint(y[idx], probe[idx], estimator,
                                                                     calibrated=scaled[idx])[1]
        for k, p in preds.items():
            held = idx[scored[k][idx]]
            draws[k].append(est.clean_accuracy(t_b, est.prediction_joint(y[held], p[held], c)))
    cond = est.condition_number(t_used)
    rows = []
    for k, r in results.items():
        mask = scored[k]
        nj = est.prediction_joint(y[mask], preds[k][mask], c)
        scope = "" if mask.all() else (f"; on the {int(mask.sum())} images of {r.folds_run} held-out fold"
                                       f"{'s' if r.folds_run > 1 else ''} (fine-tuning candidates run "
                                       "--fine-tune-folds of the K folds)")
        lo, hi = np.quantile(draws[k], [0.05, 0.95])
        row = {
            "candidate": k, "method": r.candidate.method, "mode": r.candidate.mode,
            "backbone": r.candidate.backbone.ref, "params": r.params,
            "noisy_acc": round(float(np.trace(nj)), 4),
            "clean_acc": {"value": round(est.clean_accuracy(t_used, nj), 4), "low": round(float(lo), 4),
                          "high": round(float(hi), 4), "level": 0.9},
            "estimator": "trace(T⁻ᵀN), N the joint of (given label, out-of-fold prediction)" + scope,
            "held_out_images": int(mask.sum()),
            "assumption": "class-conditional noise (the label error does not depend on the image given its class); "
                          + (f"T well conditioned (condition number {cond:.1f})" if cond <= est.CONDITION_LIMIT else
                             f"T is near-singular (condition number {cond:.1f}): the estimate is unreliable")
                          + _bound_note(est.clean_accuracy_raw(t_used, nj)),
            "at_bound": not 0.0 <= est.clean_accuracy_raw(t_used, nj) <= 1.0,
            "seconds": round(r.seconds, 1), "resumed": r.resumed,
        }
        if trusted is not None:
            # The trusted labels' own accuracy is unbiased under any noise (the trusted images being a random
            # sample): it becomes the estimate, T⁻ᵀN with the calibrated T stays beside it.
            index, verified = trusted
            held = mask[index]
            if not held.any():
                row["assumption"] += "; none of the trusted images is in its held-out folds, so T⁻ᵀN stays the estimate"
                rows.append(row)
                continue
            right = int((preds[k][index[held]] == verified[held]).sum())
            tl, th = est.wilson(right, int(held.sum()))
            row["clean_acc_transition"] = row["clean_acc"]
            row["clean_acc"] = {"value": round(right / int(held.sum()), 4), "low": round(tl, 4),
                                "high": round(th, 4), "level": 0.9}
            row["trusted_acc"] = row["clean_acc"]
            row["estimator"] = (f"accuracy of the out-of-fold predictions on the {int(held.sum())} trusted labels "
                                "(Wilson interval); trace(T⁻ᵀN) with the calibrated T in clean_acc_transition" + scope)
            row["assumption"] = "the trusted images are a random sample of the data (no assumption on the noise)"
        rows.append(row)
    return rows


def _bound_note(raw: float) -> str:
    """The assumption column's warning where trace(T⁻ᵀN) left [0, 1] and was clipped."""
    if 0.0 <= raw <= 1.0:
        return ""
    return (f"; trace(T⁻ᵀN) = {raw:.2f} was clipped to {min(max(raw, 0.0), 1.0):.0%}: the estimated T cannot have "
            "produced this candidate's agreement with the given labels (it overstates the noise), so the figure is a "
            "bound, not an estimate")


def rank_suspects(data: AdviseData, probs: np.ndarray, joint: list, detector: str, *, seed: int) -> list[dict]:
    """Every image flagged by ``detector``, ranked by the probe's probability that its label is wrong, with the
    suggested label and the action of labels_cleaned.csv (relabel at ≥ RELABEL_PROBABILITY, else drop)."""
    flagged = issues.flag(detector, data.labels, probs, np.asarray(joint), seed)
    score, suggested, p_suggested = issues.suspicion(data.labels, probs)
    order = np.argsort(-score, kind="stable")
    out = []
    for i in order:
        if not flagged[i]:
            continue
        out.append({"path": data.paths[i], "index": int(i), "given": data.class_names[data.labels[i]],
                    "suggested": data.class_names[suggested[i]], "score": round(float(score[i]), 4),
                    "suggested_probability": round(float(p_suggested[i]), 4), "flagged": True,
                    "action": "relabel" if p_suggested[i] >= RELABEL_PROBABILITY else "drop"})
    return out


def _csv_bytes(header: list[str], rows: list[list]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().encode()


def write_outputs(out: Path, advice: dict, data: AdviseData, suspects: list[dict]) -> None:
    """advice.json, suspects.csv, labels_cleaned.csv, thumbnails and index.html, each written atomically."""
    import json

    from nlbench.advise.page import build_page, write_thumbnails

    rows = [[k + 1, s["path"], s["given"], s["suggested"], s["score"], s["suggested_probability"], s["action"]]
            for k, s in enumerate(suspects)]
    atomic_write_bytes(out / "suspects.csv", _csv_bytes(
        ["rank", "path", "given_label", "suggested_label", "score", "suggested_probability", "action"], rows))
    action = {s["index"]: s for s in suspects}
    cleaned = []
    for i, (p, y) in enumerate(zip(data.paths, data.labels, strict=True)):
        s = action.get(i)
        if s is None:
            cleaned.append([p, data.class_names[y], "keep"])
        elif s["action"] == "relabel":
            cleaned.append([p, s["suggested"], "relabel"])
    atomic_write_bytes(out / "labels_cleaned.csv", _csv_bytes(["path", "label", "action"], cleaned))
    thumbs = write_thumbnails(out, suspects[:GALLERY_SIZE])
    atomic_write_bytes(out / "advice.json", json.dumps(advice, indent=1).encode())
    build_page(out, advice, suspects[:GALLERY_SIZE], thumbs)
