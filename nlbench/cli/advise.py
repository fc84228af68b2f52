"""``nlbench advise``: the command line of nlbench.advise (one's own noisy images; docs/advise.md)."""

from __future__ import annotations

import argparse
import os
import sys

from nlbench.cli.common import int_at_least, positive_int


def cmd_advise(args: argparse.Namespace) -> int:
    from nlbench.advise.pipeline import AdviseOptions, parse_budget, run_advise  # torch-backed
    from nlbench.engine.features import default_cache_dir

    parse_budget(args.budget)  # a bad budget fails before anything loads
    progress = args.progress if args.progress is not None else sys.stderr.isatty() or not os.environ.get("CI")
    options = AdviseOptions(data=args.data, backbones=args.backbones, trusted=args.trusted, budget=args.budget,
                            out=args.out, fit=args.fit, folds=args.folds,
                            fine_tune_folds=args.fine_tune_folds, seed=args.seed, input_size=args.input_size,
                            lp_epochs=args.lp_epochs, detector=args.detector,
                            noise_estimator=args.noise_estimator, progress=progress)
    cache = args.cache if args.cache is not None else default_cache_dir()
    advice = run_advise(options, cache=cache)
    rec = advice["recommendation"]
    noise = advice["noise"]["rate"]
    for problem in advice["noise"]["problems"]:
        print(f"nlbench: warning: {problem}", file=sys.stderr)
    print(f"noise rate {100 * noise['value']:.1f} % [{100 * noise['low']:.1f}, {100 * noise['high']:.1f}]; "
          f"{advice['label_issues']['flagged']} suspects; recommended {rec['candidate']} "
          f"(estimated clean accuracy {100 * rec['clean_acc']['value']:.1f} %); wrote {args.out}/index.html")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("advise", help="your own noisy images: how noisy, which labels are wrong, which method to "
                                      "train and its estimated clean accuracy (one page)")
    p.add_argument("--data", required=True, help="folder:PATH (PATH/train/<class>/*.png) or csv:FILE (path,label)")
    p.add_argument("--backbones", help="comma-separated backbones (name or name@tag); default efficientnet_lite0")
    p.add_argument("--trusted", help="CSV (path,label) of labels you verified: unbiased estimates, calibrated T")
    p.add_argument("--budget", default="15m", help="time for the candidates, e.g. 15m, 90s, 1h (default 15m)")
    p.add_argument("--out", default="advise", help="folder of index.html, advice.json, suspects.csv (default ./advise)")
    p.add_argument("--fit", action="store_true", help="train the recommended candidate on all images and save it")
    p.add_argument("--cache", help="feature cache folder (default: $NLBENCH_CACHE or ~/.cache/nlbench)")
    p.add_argument("--folds", type=int_at_least(2), default=5, help="K of the K-fold evaluation (default 5)")
    p.add_argument("--fine-tune-folds", type=positive_int,
                   help="folds of the K a fine-tuning candidate (TURN, LP-FT, FFT) runs; each is a full fine-tuning "
                        "(default 1: scored on one held-out fold; up to --folds)")
    p.add_argument("--seed", type=int_at_least(0), default=0)
    p.add_argument("--input-size", type=positive_int, help="resize images to this many pixels (default: the "
                                                           "backbone's own)")
    p.add_argument("--lp-epochs", type=positive_int, default=20, help="linear-probe epochs (default 20)")
    p.add_argument("--detector", choices=("confident-joint", "cleanlab", "gmm"),
                   help="label-issue detector (default: the one that measured best, docs/advise.md)")
    p.add_argument("--noise-estimator", choices=("anchor", "confident-joint"),
                   help="how the noise rate and T are estimated without trusted labels (default anchor: the one that "
                        "measured closer to the truth, docs/advise.md)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress lines with an ETA on stderr (default on, off when CI is set)")
    p.set_defaults(func=cmd_advise)
