"""README's and docs/advise.md's picture of ``nlbench advise``'s page (docs/images/advise_digits.png), rebuilt.

All 1,797 digits written as a class-folder tree of PNG files with 30 % of the labels flipped to another class
(seed 0), ``nlbench advise`` on it at 32 px with a 3-minute budget, the page loaded in headless Chromium and saved
full-page, scaled to 900 px. Prints the realized rate beside advise's estimate.

    python benchmarks/advise_page.py --work /tmp/advise-page
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

RATE = 0.3


def write_tree(root: Path, seed: int = 0) -> float:
    """root/train/<given label>/<index>.png; returns the realized noise rate."""
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    rng = np.random.default_rng(seed)
    given = d.target.copy()
    flip = rng.random(len(given)) < RATE
    given[flip] = (d.target[flip] + rng.integers(1, 10, flip.sum())) % 10
    for i, (image, label) in enumerate(zip(d.images, given, strict=True)):
        path = root / "train" / str(label) / f"{i:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((image * 255 / 16).round().astype(np.uint8)).save(path)
    return float(flip.mean())


def main() -> None:
    from nlbench.cli.main import main as nlbench
    from nlbench.report.browser import check_page, shrink_png

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", default="/tmp/advise-page")
    parser.add_argument("--out", default="docs/images/advise_digits.png")
    args = parser.parse_args()
    work = Path(args.work).resolve()
    realized = write_tree(work / "digits")
    out = Path(args.out).resolve()
    os.chdir(work)  # the page names the data as given: folder:digits, not this machine's path
    code = nlbench(["advise", "--data", "folder:digits", "--input-size", "32", "--budget", "3m", "--out", "advise",
                    "--cache", "cache", "--no-progress"])
    if code:
        raise SystemExit(code)
    check = check_page(Path("advise") / "index.html", screenshot=out, width=1100, full_page=True)
    if not check.ok:
        raise SystemExit(f"the page did not load cleanly: {check.summary()}")
    shrink_png(out)
    advice = json.loads((Path("advise") / "advice.json").read_text())
    print(f"realized rate {realized:.3f}; advise's estimate {advice['noise']['rate']['value']:.3f}; "
          f"recommended {advice['recommendation']['candidate']}; page: {out}")


if __name__ == "__main__":
    main()
