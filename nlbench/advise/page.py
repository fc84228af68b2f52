"""advise's page: ``DIR/index.html`` (static, no script, no network; the report's table types and styling),
with a gallery of the top suspects' thumbnails under ``DIR/thumbs/``."""

from __future__ import annotations

import datetime
import html
import io
from pathlib import Path

import jinja2

from nlbench import __version__
from nlbench.atomic import atomic_write_bytes
from nlbench.report.page import Cell, Section, Table, _background


def _shade(value: float, full: float) -> str:
    """A blue background growing with ``value`` (white at 0, full colour at ``full``)."""
    import matplotlib

    level = max(0.0, min(1.0, value / full))
    return "" if level <= 0 else f"background:{matplotlib.colors.to_hex(matplotlib.colormaps['Blues'](0.7 * level))}"

THUMB_PIXELS = 96


def _pct(value: float, digits: int = 1) -> str:
    return f"{100 * value:.{digits}f}"


def _interval(x: dict) -> str:
    return f"{_pct(x['value'])} <small>[{_pct(x['low'])}, {_pct(x['high'])}]</small>"


def write_thumbnails(out: Path, suspects: list[dict]) -> list[str]:
    """PNG thumbnails of ``suspects`` under ``out/thumbs/``; returns their paths relative to ``out``."""
    from PIL import Image

    names = []
    for k, s in enumerate(suspects):
        with Image.open(s["path"]) as im:
            im = im.convert("RGB")
            im.thumbnail((THUMB_PIXELS, THUMB_PIXELS))
            buffer = io.BytesIO()
            im.save(buffer, format="PNG")
        name = f"thumbs/suspect-{k + 1:03d}.png"
        atomic_write_bytes(out / name, buffer.getvalue())
        names.append(name)
    return names


def _matrix_table(matrix: list[list[float]], names: list[str], caption: str) -> Table:
    rows = []
    for i, row in enumerate(matrix):
        cells = []
        for j, v in enumerate(row):
            # Off-diagonal mass is what matters: shade it (blue), leave the diagonal plain.
            style = "" if i == j else _shade(float(v), 0.4)
            cells.append(Cell(f"{v:.2f}", style))
        rows.append((names[i], cells))
    return Table(caption, list(names), rows, corner="true ↓ / given →")


def build_page(out: Path, advice: dict, suspects: list[dict], thumbs: list[str]) -> Path:
    noise = advice["noise"]
    names = advice["data"]["classes"]
    rec = advice["recommendation"]
    trusted = noise.get("trusted")
    answers = [
        f"<b>Noise:</b> about {_pct(noise['rate']['value'])} % of the labels are wrong "
        f"(90 % interval {_pct(noise['rate']['low'])}–{_pct(noise['rate']['high'])} %"
        + (f"; from {trusted['labels']} trusted labels" if trusted else
           "; " + ("anchor points" if noise.get("estimator", "anchor") == "anchor" else "confident joint")
           + " of the probe") + ").",
        f"<b>Wrong labels:</b> {advice['label_issues']['flagged']} suspects flagged by the "
        f"{html.escape(advice['label_issues']['detector'])} detector (cleanlab {advice['label_issues']['cleanlab']}).",
        f"<b>Recommendation:</b> {html.escape(rec['candidate'])}, estimated clean accuracy "
        f"{_interval(rec['clean_acc'])} %"
        + (" — clipped at the bound, so a bound rather than an estimate: the estimated noise is too high for this "
           "candidate's agreement with the given labels." if rec.get("at_bound") else "."),
    ]
    if noise.get("problems"):
        answers.insert(0, "<b>Warning: the noise estimate is not trustworthy here.</b> " + "; ".join(
            html.escape(x) for x in noise["problems"]) + ". The figures below rest on it. A stronger backbone "
            "(<code>--backbones</code>), larger inputs (<code>--input-size</code>), a probe trained longer on few "
            "images (<code>--lp-epochs</code>) or a few hundred verified labels (<code>--trusted</code>) are the ways "
            "out.")
    if not trusted:
        assumes = ("assumes class-conditional noise and that the probe's most confident images of each class are "
                   "of that class; it runs high under instance-dependent noise and where the probe is weak"
                   if noise.get("estimator", "anchor") == "anchor" else
                   "counts the probe's own mistakes as label errors, so it runs high where the probe is weak")
        answers.append(f"<b>Caveat:</b> without trusted labels the noise estimate {assumes}, and the clean "
                       "accuracies with it (measured against the truth in results/advise.md). The detector flags "
                       "the probe's mistakes too, so it can flag more images than the estimated rate. A few hundred "
                       "verified labels (<code>--trusted</code>) give unbiased figures.")
    noise_section = Section("noise", "Noise", paragraphs=[
        html.escape(noise["method"]) + f". Transition matrix condition number {noise['transition_condition']}.",
    ])
    if trusted:
        noise_section.paragraphs.append(
            f"With {trusted['labels']} trusted labels: rate {_interval(trusted['rate'])} % (without them: "
            f"{_interval(trusted['rate_without_trusted'])} %). " + html.escape(trusted["changed"]) + ".")
    noise_section.tables.append(_matrix_table(noise["transition_used"], names,
                                              "Estimated transition matrix T[true, given] = P(given | true)"))
    noise_section.tables.append(Table("Per class: share of the images labelled with it whose label is wrong",
                                      ["labelled", "wrong %"],
                                      [(p["class"], [Cell(str(p["labelled"])), Cell(_pct(p["wrong_share"]))])
                                       for p in noise["per_class"]]))
    if noise["confused_pairs"]:
        noise_section.tables.append(Table("Most confused pairs", ["true class", "share %", "images"],
                                          [(f"given {p['given']}", [Cell(html.escape(p["true"])),
                                                                    Cell(_pct(p["share"], 2)), Cell(str(p["count"]))])
                                           for p in noise["confused_pairs"]]))
    best = max(r["clean_acc"]["value"] for r in advice["candidates"])
    cand_rows = []
    for r in sorted(advice["candidates"], key=lambda r: (-r["clean_acc"]["value"], -r["noisy_acc"])):
        cells = [Cell(_interval(r["clean_acc"]) + (" (bound)" if r.get("at_bound") else ""),
                      _background(100 * (r["clean_acc"]["value"] - best), 10.0, "RdYlGn")
                      if r["clean_acc"]["value"] < best else "", r["assumption"]),
                 Cell(_pct(r["noisy_acc"]))]
        if trusted:
            cells.append(Cell(_interval(r.get("clean_acc_transition", r["clean_acc"]))))
        cells.append(Cell(f"{r['seconds']:.0f}" + (" (cached)" if r["resumed"] else "")))
        held = r.get("held_out_images", advice["data"]["images"])
        cells.append(Cell("all" if held >= advice["data"]["images"] else str(held)))
        cand_rows.append((r["candidate"], cells))
    columns = ["est. clean acc % [90 %]" + (" (trusted labels)" if trusted else ""), "K-fold acc on given labels %"] + (
        ["T⁻ᵀN with calibrated T %"] if trusted else []) + ["seconds", "images scored"]
    method_section = Section("method", "Method", paragraphs=[
        "Every candidate ran K-fold on the given labels (a fine-tuning candidate the first of the K folds unless "
        "--fine-tune-folds says more: images scored); its clean accuracy is estimated as trace(T⁻ᵀN), N the "
        "joint of (given label, held-out prediction). It rests on class-conditional noise; under noise that depends "
        "on the image it is biased, and a near-singular T makes it unreliable (docs/advise.md). An estimate marked "
        "(bound) left [0, 100 %] and was clipped: the estimated noise cannot have produced that candidate's agreement "
        "with the given labels; candidates at the bound are ordered by that agreement."],
        tables=[Table("Candidates, best estimate first", columns, cand_rows)])
    if advice["skipped"]:
        method_section.tables.append(Table("Not run (budget)", ["expected s", "why"],
                                           [(s["candidate"], [Cell(f"{s['expected_s']:.0f}"),
                                                              Cell(html.escape(s["why"]))])
                                            for s in advice["skipped"]]))
    if "model" in advice:
        method_section.paragraphs.append(f"Fitted on all images: <code>{html.escape(advice['model']['load'])}</code>")
    gallery = [{"src": src, "alt": f"suspect {k + 1}", "rank": k + 1, "given": s["given"], "suggested": s["suggested"],
                "score": f"{s['score']:.2f}"} for k, (s, src) in enumerate(zip(suspects, thumbs, strict=True))]
    li = advice["label_issues"]
    suspects_text = (f"{li['flagged']} flagged ({li['relabelled']} relabelled at suggestion probability ≥ "
                     f"{advice['config']['relabel_probability']}, {li['dropped']} dropped in labels_cleaned.csv); "
                     f"the top {len(gallery)} by score (the probe's probability that the given label is wrong):")
    env = jinja2.Environment(loader=jinja2.PackageLoader("nlbench", "templates"),
                             autoescape=jinja2.select_autoescape(["html", "j2"]))
    page = env.get_template("advise.html.j2").render(
        source=advice["data"]["source"], images=advice["data"]["images"], classes=len(names),
        backbones=", ".join(advice["config"]["backbones"]), folds=advice["config"]["folds"],
        seconds=advice.get("seconds", ""), answers=answers, sections=[noise_section, method_section],
        gallery=gallery, suspects_text=suspects_text, version=__version__,
        generated=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"))
    index = out / "index.html"
    atomic_write_bytes(index, page.encode())
    return index

