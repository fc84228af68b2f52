"""Issue 23, points 2, 3 and 6, measured: the Co-teaching family's forget rate τ ('expected' vs 'nominal'),
its ramp ('steps' vs 'epochs'), the pair's views ('shared' vs 'own') and Co-teaching+'s whole-batch rule
('scaled' vs 'code'), on digits × EfficientNet-Lite0, LP, 20 epochs (the engine's LP budget).

    nlbench run --grid benchmarks/coteaching_family/digits16.toml --results RUNS   # 16 px, seeds 0-1
    nlbench run --grid benchmarks/coteaching_family/digits48.toml --results RUNS   # 48 px, seed 0
    python benchmarks/coteaching_family.py RUNS/<grid>/records

Prints one markdown row per (method variant, noise setting): τ, mean best/last test accuracy, the pair's
disagreement (share of the training samples on which the two networks' argmax differed) in the first and
last epoch and its minimum, the last selection's precision, and Co-teaching+'s whole-batch count.
"""

from __future__ import annotations

import collections
import json
import statistics
import sys
from pathlib import Path


def main(folder: str) -> None:
    rows = collections.defaultdict(list)
    for path in sorted(Path(folder).glob("*.json")):
        r = json.loads(path.read_text())
        extra = r["extra"]
        shares = [d for d in extra.get("pair_disagreement") or [] if d is not None]
        key = (r["method"] + (f"@{r['method_tag']}" if r["method_tag"] else ""), f"{r['noise']} {r['rate']:g}")
        selection = r["selection"][-1] if r["selection"] else {}
        rows[key].append({"tau": extra["forget_rate"], "best": r["test_acc_best"], "last": r["test_acc_last"],
                          "first": shares[0], "final": shares[-1], "min": min(shares),
                          "precision": selection.get("precision", float("nan")),
                          "whole": sum(extra.get("whole_batches") or [0])})
    print("| method | noise | τ | best | last | disagreement first → last (min) | selection precision | "
          "whole batches | seeds |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (method, noise), runs in sorted(rows.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        def mean(field: str, runs=runs) -> float:
            return statistics.mean(run[field] for run in runs)
        print(f"| {method} | {noise} | {runs[0]['tau']:.3g} | {mean('best'):.2f} | {mean('last'):.2f} | "
              f"{mean('first'):.3f} → {mean('final'):.3f} ({mean('min'):.3f}) | {mean('precision'):.1f} | "
              f"{mean('whole'):.0f} | {len(runs)} |")


if __name__ == "__main__":
    main(sys.argv[1])
