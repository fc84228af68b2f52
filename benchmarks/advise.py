"""``nlbench advise`` checked against the truth: results/advise.md.

On data whose true labels are known but hidden from advise's estimators (digits: 1,437 images, 360 held out as
a clean test set; Fashion-MNIST: a stratified 10,000-image subsample of Debian's training set, a 2,000-image
clean test subsample) under synthetic noise (sym, asym, inst at 0.4, and none) and seeds:

* the noise-rate estimate against the realized rate, and the transition-matrix error (mean over true classes of
  the L1 distance between estimated and realized rows, halved: the share of a row's mass misplaced), for advise's
  default estimator (anchor points) and the confident joint;
* label-issue precision, recall and F1 of each detector (ours, the project's GMM selector, cleanlab's
  ``find_label_issues`` default) on the same out-of-fold probabilities;
* each candidate's estimated clean accuracy against (a) the true clean accuracy of its own K-fold predictions
  (what the estimator estimates; TURN's on its one held-out fold, as advise scores it) and (b) the clean-test
  accuracy of the candidate trained on all noisy images;
* the recommended candidate's clean-test accuracy against the best candidate's;
* the same with 300 trusted labels (a seeded random sample of true labels).

Features are computed once per dataset (they do not depend on labels; the user-facing command keys them by the
data's content, labels included): the images are written as PNG files and a CSV, loaded by advise's own loader,
and every noise setting reuses the cached features. Each setting's numbers go to a JSON file as it finishes, so
``--report`` builds results/advise.md from whatever finished.

    python benchmarks/advise.py --datasets digits,fashion_mnist --seeds 0,1,2 --work /tmp/advise-bench
    python benchmarks/advise.py --report --work /tmp/advise-bench --out results/advise.md --notes NOTES.md
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time
from pathlib import Path

import numpy as np

CANDIDATES = ("ce", "gce", "elr", "sce", "forward_t", "cl")
FINE_TUNING = ("turn",)  # LP-FFT, scored on one held-out fold as advise runs it (--fine-tune-folds 1)
NOISES = (("sym", 0.4), ("asym", 0.4), ("inst", 0.4), ("none", 0.0))
TRUSTED = 300


def materialise(name: str, work: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """(CSV of advise + test images as PNG files, advise indices, test indices) of ``name``."""
    from PIL import Image

    folder = work / name
    csv_path = folder / "images.csv"
    if name == "digits":
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        d = load_digits()
        images = (d.images * 255 / 16).round().astype(np.uint8)
        labels = d.target.astype(np.int64)
        advise_idx, test_idx = train_test_split(np.arange(len(labels)), test_size=360, stratify=labels,
                                                random_state=0)
    else:
        from nlbench.datasets import load_dataset

        ds = load_dataset("fashion_mnist", train_size=10_000, test_size=2_000, val_size=1_000)
        images = np.concatenate([ds.train.images, ds.test.images])[..., 0]
        labels = np.concatenate([ds.train.labels, ds.test.labels]).astype(np.int64)
        advise_idx = np.arange(len(ds.train.labels))
        test_idx = np.arange(len(ds.train.labels), len(labels))
    advise_idx, test_idx = np.sort(advise_idx), np.sort(test_idx)
    if not csv_path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        rows = ["path,label"]
        for i, (x, y) in enumerate(zip(images, labels, strict=True)):
            p = folder / "png" / f"{i:05d}.png"
            p.parent.mkdir(exist_ok=True)
            Image.fromarray(x).save(p)
            rows.append(f"png/{i:05d}.png,{y}")
        csv_path.write_text("\n".join(rows) + "\n")
    np.save(folder / "pixels.npy", images)
    return csv_path, advise_idx, test_idx


class SubsetFeatures:
    """The rows ``rows`` of a ``FullFeatures`` (advise's images out of advise + test)."""

    def __init__(self, full, rows: np.ndarray) -> None:
        self.full, self.rows = full, rows
        self.choice = full.choice
        self.key = full.key

    def view(self, view: int):
        import torch

        return self.full.view(view)[torch.as_tensor(self.rows)]

    @property
    def digest(self) -> str:
        return self.full.digest + f"-subset{len(self.rows)}"

    @property
    def seconds_per_image(self):
        return self.full.seconds_per_image


def clean_test_accuracy(candidate, full, paths, labels_all, noisy, advise_idx, test_idx, config, seed,
                        rate) -> float:
    """Clean-test accuracy of ``candidate`` trained on every advise image with the noisy labels."""
    import functools

    import torch

    from nlbench.advise.portfolio import FoldFeatures, FoldTrainer, _transform, candidate_config
    from nlbench.backbones import create_backbone
    from nlbench.datasets import Split
    from nlbench.engine.images import image_source
    from nlbench.engine.train import determinism
    from nlbench.methods import CellContext, build_method

    rows = {"train": advise_idx, "val": test_idx, "test": test_idx}
    splits = {k: Split(labels=labels_all[v], paths=[paths[i] for i in v]) for k, v in rows.items()}
    trainer = FoldTrainer(
        config=config, num_classes=10, labels=noisy, val_labels=labels_all[test_idx], test_labels=labels_all[test_idx],
        images=lambda split, device: image_source(splits[split], device),
        backbone_factory=functools.partial(create_backbone, full.choice.backbone, pretrained=True),
        feature_cache=FoldFeatures(full, rows), feature_key=lambda s, v: (s, v),
        transform=_transform(config.input_size, True), seed=seed, log=lambda _m: None)
    ctx = CellContext.of(trainer, candidate.mode, dataset="advise", noise=("sym", rate))
    torch.manual_seed(seed)
    with determinism(candidate_config(candidate, config), trainer.device):
        build_method(candidate.method, candidate.mode, {}).run(ctx)
    return float((trainer.held_out_logits.argmax(1).numpy() == labels_all[test_idx]).mean())


def run_dataset(name: str, seeds: list[int], work: Path, candidates: list[str], noises: list[tuple[str, float]],
                input_size: int) -> None:
    from nlbench.advise import estimators as est
    from nlbench.advise import issues
    from nlbench.advise.data import load_advise_data
    from nlbench.advise.pipeline import estimate_noise, score_candidates
    from nlbench.advise.portfolio import Candidate, FullFeatures, evaluate, fold_ids, parse_backbones
    from nlbench.engine.config import TrainConfig
    from nlbench.noise import apply_noise

    csv_path, advise_idx, test_idx = materialise(name, work)
    cache = work / "cache"
    data_all = load_advise_data(f"csv:{csv_path}", folds=5)
    # load_advise_data sorts by path: the zero-padded names keep the CSV's order.
    labels_all = data_all.labels
    pixels = np.load(work / name / "pixels.npy")
    config = TrainConfig(input_size=input_size)
    backbone = parse_backbones(None, input_size)[0]
    started = time.perf_counter()
    full_all = FullFeatures(backbone, data_all, cache, config, log=print)
    full_all.view(0)
    feature_s = time.perf_counter() - started
    full = SubsetFeatures(full_all, advise_idx)
    clean = labels_all[advise_idx]
    base = dataclasses.replace(data_all, paths=[data_all.paths[i] for i in advise_idx], labels=clean)
    for seed in seeds:
        for model, rate in noises:
            out = work / "runs" / f"{name}-{model}{rate:g}-s{seed}.json"
            if out.is_file():
                continue
            t0 = time.perf_counter()
            drawn = apply_noise(model, clean, rate=rate, seed=seed, num_classes=10,
                                inputs=pixels[advise_idx][..., None] if model == "inst" else None,
                                dataset="digits" if name == "digits" else "fashion_mnist")
            noisy = drawn.labels
            data = dataclasses.replace(base, labels=noisy)
            folds = fold_ids(noisy, 5, seed)
            results = {}
            probe = None
            rate_est = 0.0
            for m in candidates:
                cand = Candidate(m, "lp-fft" if m in FINE_TUNING else "lp", backbone)
                results[cand.name] = evaluate(cand, full, data, folds, config=config, cache=cache, seed=seed,
                                              nominal_rate=rate_est, log=print,
                                              folds_run=1 if cand.fine_tunes else None)
                if m == "ce":
                    probe = results[cand.name].probs
                    rate_est = estimate_noise(data, probe, None, seed=seed)["rate"]["value"]
            truly_wrong = noisy != clean
            realized_t = drawn.transition[:10, :10]
            rng = np.random.default_rng(1000 + seed)
            trusted = (np.sort(rng.choice(len(clean), TRUSTED, replace=False)),)
            trusted = (trusted[0], clean[trusted[0]])
            record = {"dataset": name, "noise": model, "rate": rate, "seed": seed,
                      "realized_rate": float(truly_wrong.mean()), "feature_seconds": round(feature_s, 1)}
            for label, tr, estimator in (("plain", None, "anchor"), ("plain_cj", None, "confident-joint"),
                                         ("trusted", trusted, "anchor")):
                noise = estimate_noise(data, probe, tr, seed=seed, estimator=estimator)
                t_est = np.asarray(noise["transition_used"])
                record[label] = {
                    "rate_est": noise["rate"], "transition_error": float(np.abs(t_est - realized_t).sum(1).mean() / 2),
                    "transition_condition": est.condition_number(t_est),
                    "candidates": [],
                }
                for row in score_candidates(data, results, probe, tr, noise, seed=seed):
                    result = results[row["candidate"]]
                    held = result.scored  # all images, or a fine-tuning candidate's one held-out fold
                    preds = result.probs[held].argmax(1)
                    row["true_kfold_acc"] = float((preds == clean[held]).mean())
                    # The estimator with the realized T: what trace(T⁻ᵀN) gives when T is known.
                    row["oracle_t_acc"] = est.clean_accuracy(realized_t,
                                                             est.prediction_joint(noisy[held], preds, 10))
                    record[label]["candidates"].append({k: row[k] for k in (
                        "candidate", "noisy_acc", "clean_acc", "true_kfold_acc", "oracle_t_acc",
                        "clean_acc_transition", "held_out_images") if k in row})
                record[label]["problems"] = noise["problems"]
            joint = est.calibrated_joint(noisy, probe)
            record["detectors"] = {}
            for d in issues.DETECTORS:
                if d == "cleanlab" and not issues.cleanlab_available():
                    continue
                record["detectors"][d] = issues.detection_scores(issues.flag(d, noisy, probe, joint, seed),
                                                                 truly_wrong)
            test_acc = {}
            for m in candidates:
                cand = Candidate(m, "lp-fft" if m in FINE_TUNING else "lp", backbone)
                test_acc[cand.name] = clean_test_accuracy(cand, full_all, data_all.paths, labels_all, noisy,
                                                          advise_idx, test_idx, config, seed, rate_est)
            record["clean_test_acc"] = test_acc
            record["seconds"] = round(time.perf_counter() - t0, 1)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(record, indent=1))
            print(f"{out.name}: {record['seconds']} s; rate {record['realized_rate']:.3f} est "
                  f"{record['plain']['rate_est']['value']:.3f}", flush=True)


def report(work: Path, out: Path, notes: str) -> None:
    records = [json.loads(p.read_text()) for p in sorted((work / "runs").glob("*.json"))]
    lines = ["# nlbench advise against the truth", "",
             f"`python benchmarks/advise.py` on {platform.node() and 'this repository'}'s 2-core AMD EPYC CPU VM "
             "(24 GiB, no GPU; the cores were shared with other jobs while it ran), EfficientNet-Lite0 at 32 px, "
             "5 folds, 20 LP epochs, LP candidates " + ", ".join(CANDIDATES) + " and TURN (LP-FFT, 5 FFT "
             "epochs) scored on one held-out fold as advise runs it (`--fine-tune-folds 1`: 288 digits, 2,000 "
             "Fashion-MNIST images; where a setting lists fewer candidates, the summary's candidates column says "
             "so). Figures are fractions in %.", ""]
    if not records:
        out.write_text("\n".join(lines + ["No run finished."]) + "\n")
        return
    seeds = sorted({r["seed"] for r in records})
    lines.append(f"{len(records)} settings finished; seeds {', '.join(map(str, seeds))}.")
    lines += ["", "## Noise rate and transition matrix", "",
              "anchor: advise's default estimator; confident joint: the estimator before it (`--noise-estimator "
              "confident-joint`).", "",
              "| dataset | noise | seed | realized % | anchor: est. % [90 %] | error | T error | confident joint: "
              "est. % | error | T error | with 300 trusted: est. % | error | T error |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        p, cj, t = r["plain"], r["plain_cj"], r["trusted"]
        lines.append(f"| {r['dataset']} | {r['noise']} {r['rate']:g} | {r['seed']} | {100 * r['realized_rate']:.1f} | "
                     f"{100 * p['rate_est']['value']:.1f} [{100 * p['rate_est']['low']:.1f}, "
                     f"{100 * p['rate_est']['high']:.1f}] | "
                     f"{100 * (p['rate_est']['value'] - r['realized_rate']):+.1f} | {p['transition_error']:.3f} | "
                     f"{100 * cj['rate_est']['value']:.1f} | "
                     f"{100 * (cj['rate_est']['value'] - r['realized_rate']):+.1f} | "
                     f"{cj['transition_error']:.3f} | {100 * t['rate_est']['value']:.1f} | "
                     f"{100 * (t['rate_est']['value'] - r['realized_rate']):+.1f} | {t['transition_error']:.3f} |")
    lines += ["", "## Label issues: precision / recall / F1 (%) against the truth", "",
              "| dataset | noise | seed | " + " | ".join(records[0]["detectors"]) + " |",
              "|---|---|---|" + "---|" * len(records[0]["detectors"])]
    for r in records:
        # On clean data every flag is a false alarm: the count says how many.
        cells = [f"{s['flagged']} flagged" if r["noise"] == "none" else
                 f"{100 * s['precision']:.1f} / {100 * s['recall']:.1f} / {100 * s['f1']:.1f}"
                 for s in r["detectors"].values()]
        lines.append(f"| {r['dataset']} | {r['noise']} {r['rate']:g} | {r['seed']} | " + " | ".join(cells) + " |")
    f1 = {d: np.mean([r["detectors"][d]["f1"] for r in records if d in r["detectors"] and r["noise"] != "none"])
          for d in records[0]["detectors"]}
    lines += ["", "Mean F1 over the noisy settings: " + ", ".join(f"{d} {100 * v:.1f}" for d, v in f1.items()) + "."]
    lines += ["", "## Estimated against true clean accuracy of each candidate", "",
              "true K-fold: the candidate's own out-of-fold predictions scored against the true labels (what "
              "trace(T⁻ᵀN) estimates); clean test: the candidate trained on all noisy images, scored on the clean "
              "test images.", "",
              "| dataset | noise | seed | candidate | true K-fold % | est. (anchor T) % | error | est. (CJ T) % | "
              "error | est. with realized T % | "
              "error | clean test % | 300 trusted: est. % | error | T⁻ᵀN, calibrated T % | error |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        trusted = {c["candidate"]: c for c in r["trusted"]["candidates"]}
        by_cj = {c["candidate"]: c for c in r["plain_cj"]["candidates"]}
        for c in r["plain"]["candidates"]:
            t = trusted[c["candidate"]]
            cj = by_cj[c["candidate"]]
            truth = c["true_kfold_acc"]
            lines.append(
                f"| {r['dataset']} | {r['noise']} {r['rate']:g} | {r['seed']} | {c['candidate'].split(' ·')[0]} | "
                f"{100 * truth:.1f} | {100 * c['clean_acc']['value']:.1f} | "
                f"{100 * (c['clean_acc']['value'] - truth):+.1f} | {100 * cj['clean_acc']['value']:.1f} | "
                f"{100 * (cj['clean_acc']['value'] - truth):+.1f} | "
                f"{100 * c['oracle_t_acc']:.1f} | {100 * (c['oracle_t_acc'] - truth):+.1f} | "
                f"{100 * r['clean_test_acc'][c['candidate']]:.1f} | {100 * t['clean_acc']['value']:.1f} | "
                f"{100 * (t['clean_acc']['value'] - truth):+.1f} | {100 * t['clean_acc_transition']['value']:.1f} | "
                f"{100 * (t['clean_acc_transition']['value'] - truth):+.1f} |")
    lines += ["", "## Summary per setting (mean over seeds)", "",
              "LP columns: the mean absolute error of the LP candidates' estimates; TURN: the mean error (signed) of "
              "its estimate on its one held-out fold.", "",
              "| dataset | noise | settings | candidates | rate error (anchor) | (CJ) | rate error, trusted | "
              "LP: mean abs. acc. error (anchor T) | (CJ T) | with realized T | 300 trusted | TURN: acc. error "
              "(anchor T) | 300 trusted | recommended | recommended − best clean test | recommended − CE clean test |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    groups: dict[tuple, list] = {}
    for r in records:
        groups.setdefault((r["dataset"], r["noise"], r["rate"]), []).append(r)
    for (ds, noise, rate), rs in groups.items():
        rate_err = np.mean([r["plain"]["rate_est"]["value"] - r["realized_rate"] for r in rs])
        def lp(rows: list[dict]) -> list[dict]:
            return [c for c in rows if c["candidate"].startswith("LP ")]

        def turn_error(label: str, rs: list[dict] = rs) -> str:
            errors = [c["clean_acc"]["value"] - c["true_kfold_acc"] for r in rs for c in r[label]["candidates"]
                      if "TURN" in c["candidate"]]
            return f"{100 * np.mean(errors):+.1f}" if errors else "—"

        plain = [c for r in rs for c in lp(r["plain"]["candidates"])]
        acc_err = np.mean([abs(c["clean_acc"]["value"] - c["true_kfold_acc"]) for c in plain])
        rate_err_cj = np.mean([r["plain_cj"]["rate_est"]["value"] - r["realized_rate"] for r in rs])
        acc_err_cj = np.mean([abs(c["clean_acc"]["value"] - c["true_kfold_acc"]) for r in rs
                              for c in lp(r["plain_cj"]["candidates"])])
        count = len(rs[0]["plain"]["candidates"])
        acc_err_t = np.mean([abs(c["clean_acc"]["value"] - c["true_kfold_acc"]) for r in rs
                             for c in lp(r["trusted"]["candidates"])])
        acc_err_o = np.mean([abs(c["oracle_t_acc"] - c["true_kfold_acc"]) for c in plain])
        rate_err_t = np.mean([r["trusted"]["rate_est"]["value"] - r["realized_rate"] for r in rs])
        rec_gap, ce_gap, recommended = [], [], []
        for r in rs:
            # advise's rule: the highest estimate, ties (at a bound) broken by agreement with the given labels
            best = max(r["plain"]["candidates"], key=lambda c: (c["clean_acc"]["value"], c["noisy_acc"]))["candidate"]
            recommended.append(best.split(" ·")[0])
            tests = r["clean_test_acc"]
            rec_gap.append(tests[best] - max(tests.values()))
            ce_gap.append(tests[best] - next(v for k, v in tests.items() if k.startswith("LP CE ")))
        gaps = (f"{100 * np.mean(rec_gap):+.1f} | {100 * np.mean(ce_gap):+.1f}" if count > 1 else
                "— (CE only) | —")
        lines.append(f"| {ds} | {noise} {rate:g} | {len(rs)} | {count} | {100 * rate_err:+.1f} | "
                     f"{100 * rate_err_cj:+.1f} | {100 * rate_err_t:+.1f} | {100 * acc_err:.1f} | "
                     f"{100 * acc_err_cj:.1f} | {100 * acc_err_o:.1f} | {100 * acc_err_t:.1f} | "
                     f"{turn_error('plain')} | {turn_error('trusted')} | "
                     f"{', '.join(sorted(set(recommended)))} | {gaps} |")
    lines += ["", notes.strip(), ""]
    out.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default="digits,fashion_mnist")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--noises", default=",".join(f"{m}:{r}" for m, r in NOISES))
    parser.add_argument("--candidates", default=",".join(CANDIDATES + FINE_TUNING))
    parser.add_argument("--work", default="/tmp/advise-bench")
    parser.add_argument("--input-size", type=int, default=32)
    parser.add_argument("--report", action="store_true")
    parser.add_argument("--notes", help="markdown file appended to the report (the timing run, the reading)")
    parser.add_argument("--out", default="results/advise.md")
    args = parser.parse_args()
    work = Path(args.work)
    if args.report:
        report(work, Path(args.out), Path(args.notes).read_text() if args.notes else "")
        return
    noises = [(m, float(r)) for m, r in (s.split(":") for s in args.noises.split(","))]
    for name in args.datasets.split(","):
        run_dataset(name, [int(s) for s in args.seeds.split(",")], work, args.candidates.split(","), noises,
                    args.input_size)


if __name__ == "__main__":
    main()
