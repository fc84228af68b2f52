"""``nlbench advise`` end to end on digits written as a real folder tree of PNG files with synthetic noise whose
truth the test knows: the outputs exist and agree with each other and with the truth, a rerun resumes from the
cache, ``--fit`` saves a model that loads and predicts, and the page loads in headless Chromium."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from nlbench.cli.main import main

PER_CLASS = 30
RATE = 0.3


@pytest.fixture(scope="module")
def digits_tree(tmp_path_factory):
    """root/train/<given label>/<index>.png for 300 digits, 30 % of the labels flipped to another class; the
    truth as {path: (true, given)}."""
    from sklearn.datasets import load_digits

    d = load_digits()
    rng = np.random.default_rng(0)
    pick = np.concatenate([rng.choice(np.flatnonzero(d.target == c), PER_CLASS, replace=False) for c in range(10)])
    true = d.target[pick]
    given = true.copy()
    flip = rng.random(len(pick)) < RATE
    given[flip] = (true[flip] + rng.integers(1, 10, flip.sum())) % 10
    root = tmp_path_factory.mktemp("digits")
    truth = {}
    for i, (k, y, g) in enumerate(zip(pick, true, given, strict=True)):
        path = root / "train" / str(g) / f"{i:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((d.images[k] * 255 / 16).round().astype(np.uint8)).save(path)
        truth[str(path)] = (int(y), int(g))
    return root, truth


def _advise(root, out, cache, *extra: str) -> int:
    return main(["advise", "--data", f"folder:{root}", "--input-size", "16", "--lp-epochs", "10", "--folds", "3",
                 "--budget", "40s", "--out", str(out), "--cache", str(cache), "--no-progress", *extra])


@pytest.mark.slow
def test_advise_digits_end_to_end(digits_tree, tmp_path, capsys):
    root, truth = digits_tree
    out, cache = tmp_path / "out", tmp_path / "cache"
    # A train/-only tree (no val/ or test/) must run: the grid loader's hold-outs are pooled back.
    assert _advise(root, out, cache, "--fit") == 0
    captured = capsys.readouterr()
    printed = captured.out
    advice = json.loads((out / "advice.json").read_text())
    assert advice["data"]["images"] == 300 and advice["data"]["class_counts"] == np.bincount(
        [g for _, g in truth.values()], minlength=10).tolist()
    assert f"{advice['label_issues']['flagged']} suspects" in printed

    # The noise estimate: an interval around the point, T's rows are distributions.
    rate = advice["noise"]["rate"]
    assert rate["low"] <= rate["value"] <= rate["high"]
    assert np.asarray(advice["noise"]["transition"]).sum(1) == pytest.approx(np.ones(10), abs=1e-3)

    # A 16-px probe trained 10 epochs on 200 images a fold agrees with the given labels little more than chance: the
    # consistency checks say the estimate cannot be trusted, on stderr, in advice.json and at the top of the page.
    probe_agreement = advice["candidates"][0]["noisy_acc"]
    assert advice["candidates"][0]["candidate"].startswith("LP CE ") and probe_agreement < 0.3
    problems = advice["noise"]["problems"]
    recommendation = advice["recommendation"]
    assert problems and recommendation["unreliable"] and "consistency checks" in recommendation["why"]
    assert [line.removeprefix("nlbench: warning: ") for line in captured.err.splitlines()
            if line.startswith("nlbench: warning: ")] == problems
    page = (out / "index.html").read_text()
    assert "Warning: the noise estimate is not trustworthy here." in page
    assert page.index("Warning: the noise estimate") < page.index("<b>Noise:</b>")

    # suspects.csv: the flagged images, ranked by score, each with its given label (its folder).
    with open(out / "suspects.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == advice["label_issues"]["flagged"] > 0
    scores = [float(r["score"]) for r in rows]
    assert scores == sorted(scores, reverse=True)
    for r in rows:
        assert r["given_label"] == str(truth[r["path"]][1]) != r["suggested_label"]
    # Better than flagging at random: the precision of the flagged set beats the realized noise rate.
    realized = np.mean([t != g for t, g in truth.values()])
    precision = np.mean([truth[r["path"]][0] != truth[r["path"]][1] for r in rows])
    assert precision > realized

    # labels_cleaned.csv: every image but the dropped ones; relabelled ones carry the suggestion.
    with open(out / "labels_cleaned.csv", newline="") as f:
        cleaned = list(csv.DictReader(f))
    assert len(cleaned) == 300 - advice["label_issues"]["dropped"]
    suggested = {r["path"]: r["suggested_label"] for r in rows if r["action"] == "relabel"}
    assert sum(r["action"] == "relabel" for r in cleaned) == len(suggested) == advice["label_issues"]["relabelled"]
    for r in cleaned:
        assert r["label"] == (suggested[r["path"]] if r["action"] == "relabel" else str(truth[r["path"]][1]))

    # Candidates: CE first; every other one either ran or says why not; the recommendation is the best estimate.
    names = [c["candidate"] for c in advice["candidates"]]
    assert names[0].startswith("LP CE ")
    assert len(names) + len(advice["skipped"]) == len(set(names) | {s["candidate"] for s in advice["skipped"]})
    # Estimates clipped at the 100 % bound tie; their agreement with the given labels orders them.
    best = max(advice["candidates"], key=lambda c: (c["clean_acc"]["value"], c["noisy_acc"]))
    assert advice["recommendation"]["candidate"] == best["candidate"]
    assert advice["recommendation"]["at_bound"] == best["at_bound"]
    for c in advice["candidates"]:  # a clipped estimate sits on the bound it was clipped to
        assert not c["at_bound"] or c["clean_acc"]["value"] in (0.0, 1.0)
    for c in advice["candidates"]:
        assert 0 <= c["clean_acc"]["low"] <= c["clean_acc"]["high"] <= 1 and "class-conditional" in c["assumption"]

    # The page shows the answers and the gallery (one thumbnail per top suspect).
    html = (out / "index.html").read_text()
    gallery = min(24, len(rows))
    assert html.count('<img src="thumbs/') == gallery and len(list((out / "thumbs").glob("*.png"))) == gallery
    assert best["candidate"].replace("·", "&middot;") in html or best["candidate"] in html

    # --fit: the saved model loads with the documented line and predicts class names.
    from nlbench.advise import load_model

    paths = list(truth)[:8]
    predicted = load_model(out).predict(paths)
    assert len(predicted) == 8 and set(predicted) <= {str(c) for c in range(10)}
    assert advice["model"]["load"].startswith("from nlbench.advise import load_model")

    # A rerun (as after a kill) reads every finished candidate from the cache and gives the same numbers.
    assert _advise(root, tmp_path / "again", cache) == 0
    again = json.loads((tmp_path / "again" / "advice.json").read_text())
    ran = {c["candidate"]: c for c in advice["candidates"]}
    for c in again["candidates"]:
        if c["candidate"] in ran:
            assert c["resumed"] and c["clean_acc"] == ran[c["candidate"]]["clean_acc"]

    # The page in a real headless Chromium: every thumbnail decodes, every table has rows, no console error.
    browser = pytest.importorskip("nlbench.report.browser")
    pytest.importorskip("playwright.sync_api")
    if browser.find_chromium() is None:
        pytest.skip("no Chromium on PATH (Debian: apt install chromium)")
    check = browser.check_page(out / "index.html", screenshot=tmp_path / "shot.png")
    assert check.ok, check.summary()
    assert check.images == gallery and check.tables >= 4


def test_trusted_labels_change_the_estimates(digits_tree, tmp_path, capsys):
    root, truth = digits_tree
    cache = tmp_path / "cache"
    paths = sorted(truth)[:120]
    trusted = tmp_path / "trusted.csv"
    trusted.write_text("path,label\n" + "".join(f"{p},{truth[p][0]}\n" for p in paths))
    assert main(["advise", "--data", f"folder:{root}", "--input-size", "16", "--lp-epochs", "5", "--folds", "3",
                 "--budget", "1s", "--out", str(tmp_path / "out"), "--cache", str(cache), "--no-progress",
                 "--trusted", str(trusted)]) == 0
    advice = json.loads((tmp_path / "out" / "advice.json").read_text())
    wrong = sum(truth[p][0] != truth[p][1] for p in paths)
    # With trusted labels the rate is theirs (hand-countable), and each candidate's estimate is its accuracy on them.
    assert advice["noise"]["rate"]["value"] == pytest.approx(wrong / 120, abs=1e-4)
    assert advice["noise"]["trusted"]["labels"] == 120
    # A 1 s budget runs the CE probe and whatever a fast machine fits after it: each estimate is the trusted one.
    candidates = advice["candidates"]
    assert "ce" in [c["method"] for c in candidates]
    assert all(c["clean_acc"] == c["trusted_acc"] and "clean_acc_transition" in c for c in candidates)
    assert advice["skipped"]
