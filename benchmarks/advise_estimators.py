"""advise's design choices for the noise estimate, measured on the CE probe of ``benchmarks/advise.py``.

For every setting of that benchmark (its work folder's feature cache and K-fold CE probes are read back, not
retrained), against the truth hidden from advise:

* the noise-rate error of four estimators: the anchor points as advise takes them (temperature-scaled
  probabilities, the mean over each class's top 3 %, the given labels' prior), the same with the clean prior
  solved from Tᵀπ = the given prior, Patrini et al.'s single image at the 97th percentile of the same scaled
  probabilities, the confident joint, and rows read from the anchors' given labels instead of their probabilities
  (the top 1 % of images per class: out-of-fold predictions chose them, so under class-conditional noise their
  labels are a sample of T's row, and on clean data any label other than the class is an anchor that is not of it);
* the label-issue F1 of the confident-joint detector pruning by the confident joint's Q (advise's detector) and
  by the anchor estimate's Q.

    python benchmarks/advise_estimators.py --work /tmp/advise-bench
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
from advise import NOISES, SubsetFeatures, materialise


def probes(work: Path, name: str, seeds: list[int]):
    """(setting, noisy, clean, out-of-fold CE probabilities) of every setting of ``name``, from the cache."""
    from nlbench.advise.data import load_advise_data
    from nlbench.advise.portfolio import Candidate, FullFeatures, evaluate, fold_ids, parse_backbones
    from nlbench.engine.config import TrainConfig
    from nlbench.noise import apply_noise

    csv_path, advise_idx, _ = materialise(name, work)
    data_all = load_advise_data(f"csv:{csv_path}", folds=5)
    pixels = np.load(work / name / "pixels.npy")
    config = TrainConfig(input_size=32)
    backbone = parse_backbones(None, 32)[0]
    full = SubsetFeatures(FullFeatures(backbone, data_all, work / "cache", config, log=lambda _m: None), advise_idx)
    clean = data_all.labels[advise_idx]
    base = dataclasses.replace(data_all, paths=[data_all.paths[i] for i in advise_idx], labels=clean)
    for seed in seeds:
        for model, rate in NOISES:
            noisy = apply_noise(model, clean, rate=rate, seed=seed, num_classes=10,
                                inputs=pixels[advise_idx][..., None] if model == "inst" else None,
                                dataset=name).labels
            data = dataclasses.replace(base, labels=noisy)
            result = evaluate(Candidate("ce", "lp", backbone), full, data, fold_ids(noisy, 5, seed), config=config,
                              cache=work / "cache", seed=seed, nominal_rate=0.0, log=print)
            yield f"{name} {model} {rate:g} s{seed}", noisy, clean, result.probs


def label_anchor_transition(noisy: np.ndarray, probs: np.ndarray, top_share: float = 0.01) -> np.ndarray:
    """T[i, :] = the given labels' distribution over the top ``top_share`` of images by probs[:, i]."""
    n, c = probs.shape
    k = max(1, int(round(top_share * n)))
    t = np.empty((c, c))
    for i in range(c):
        top = np.argpartition(-probs[:, i], k - 1)[:k]
        t[i] = np.bincount(noisy[top], minlength=c) / k
    return t


def main() -> None:
    from nlbench.advise import estimators as est
    from nlbench.advise.issues import detection_scores, flag_confident_joint
    from nlbench.engine.transition import anchor_transition

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", default="/tmp/advise-bench")
    parser.add_argument("--datasets", default="digits,fashion_mnist")
    parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args()
    print("| setting | realized % | anchor (advise) error | anchor, π solved | anchor, 97th-percentile image | "
          "confident joint | anchors' given labels, top 1 % | detector F1: CJ's Q | anchor's Q |")
    print("|---|---|---|---|---|---|---|---|---|")
    errors: dict[str, list[float]] = {"mean": [], "solved": [], "single": [], "cj": [], "labels": []}
    f1: dict[str, list[float]] = {"cj": [], "anchor": []}
    for name in args.datasets.split(","):
        for setting, noisy, clean, probs in probes(Path(args.work), name, [int(s) for s in args.seeds.split(",")]):
            realized = float((noisy != clean).mean())
            scaled, _ = est.temperature_scale(noisy, probs)
            q_anchor, t_anchor = est.estimate_joint(noisy, probs, "anchor", calibrated=scaled)
            q_solved = est.joint_from_transition(t_anchor, est.clean_prior(t_anchor, noisy, solve=True))
            t_single, _ = anchor_transition(scaled, percentile=97)
            q_single = est.joint_from_transition(t_single, est.clean_prior(t_single, noisy))
            q_cj = est.calibrated_joint(noisy, probs)
            t_labels = label_anchor_transition(noisy, probs)
            q_labels = est.joint_from_transition(t_labels, est.clean_prior(t_labels, noisy))
            row = {"mean": est.noise_rate(q_anchor) - realized, "solved": est.noise_rate(q_solved) - realized,
                   "single": est.noise_rate(q_single) - realized, "cj": est.noise_rate(q_cj) - realized,
                   "labels": est.noise_rate(q_labels) - realized}
            for k, v in row.items():
                errors[k].append(v)
            cells = [f"{100 * row[k]:+.1f}" for k in ("mean", "solved", "single", "cj", "labels")]
            if realized > 0:
                wrong = noisy != clean
                for k, q in (("cj", q_cj), ("anchor", q_anchor)):
                    f1[k].append(detection_scores(flag_confident_joint(noisy, probs, q), wrong)["f1"])
                cells += [f"{100 * f1['cj'][-1]:.1f}", f"{100 * f1['anchor'][-1]:.1f}"]
            else:
                cells += ["—", "—"]
            print(f"| {setting} | {100 * realized:.1f} | " + " | ".join(cells) + " |", flush=True)
    means = " | ".join(f"{100 * np.mean(np.abs(errors[k])):.1f}" for k in errors)
    print(f"| mean absolute error / mean F1 | | {means} | {100 * np.mean(f1['cj']):.1f} | "
          f"{100 * np.mean(f1['anchor']):.1f} |")


if __name__ == "__main__":
    main()
