"""The documentation holds together: every relative link of README.md, CONTRIBUTING.md and docs/*.md points at a
file of the repository (and an #anchor at a heading of it), README reaches every page of docs/, and
docs/architecture.md draws the import contract's layers and names each module of the package once."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from markdown_it import MarkdownIt

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]
MARKDOWN = MarkdownIt("commonmark").enable("table")


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, each space a hyphen."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The anchors GitHub gives the headings of ``page`` (a repeated heading gets -1, -2, …)."""
    tokens = MARKDOWN.parse(page.read_text())
    seen: dict[str, int] = {}
    found = set()
    for opening, inline in zip(tokens, tokens[1:], strict=False):
        if opening.type != "heading_open":
            continue
        text = "".join(child.content for child in inline.children or [] if child.type in ("text", "code_inline"))
        base = slug(text)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(page: Path) -> list[str]:
    """Every link and image target of ``page``, in order."""
    targets = []
    for token in MARKDOWN.parse(page.read_text()):
        for child in token.children or []:
            if child.type == "link_open":
                targets.append(str(child.attrs["href"]))
            elif child.type == "image":
                targets.append(str(child.attrs["src"]))
    return targets


def test_slug_follows_githubs_rule():
    assert slug("What's in the box") == "whats-in-the-box"
    assert slug("1. UNICON selection") == "1-unicon-selection"
    assert slug("fmnist_table1: Table 1 on Fashion-MNIST, on a CPU") == \
        "fmnist_table1-table-1-on-fashion-mnist-on-a-cpu"
    assert slug("Quickstart: time and memory (CPU only)") == "quickstart-time-and-memory-cpu-only"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path):
    broken = []
    for target in links(page):
        parts = urlsplit(target)
        if parts.scheme or parts.netloc:
            continue  # a web address: not checked offline
        path = (page.parent / unquote(parts.path)).resolve() if parts.path else page
        if not path.exists():
            broken.append(f"{target}: no file {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
        elif not path.is_relative_to(ROOT):
            broken.append(f"{target}: points outside the repository")
        elif parts.fragment and path.suffix == ".md" and parts.fragment not in anchors(path):
            broken.append(f"{target}: no heading #{parts.fragment} in {path.relative_to(ROOT)}")
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)


def test_readme_links_every_page_of_docs_and_the_contributors_guide():
    linked = {(ROOT / urlsplit(t).path).resolve() for t in links(ROOT / "README.md") if not urlsplit(t).scheme}
    missing = [p.relative_to(ROOT) for p in [ROOT / "CONTRIBUTING.md", *(ROOT / "docs").glob("*.md")]
               if p.resolve() not in linked]
    assert not missing, f"README does not link {missing}"


def test_readme_stays_a_front_door():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 170


def architecture_section(text: str, heading: str) -> str:
    start = text.index(heading) + len(heading)
    ends = [i for i in (text.find("\n**`", start), text.find("\n## ", start)) if i != -1]
    return text[start:min(ends)] if ends else text[start:]


def test_the_layer_picture_is_the_import_contract():
    contract = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    layers = next(c["layers"] for c in contract if c["type"] == "layers")
    text = (ROOT / "docs" / "architecture.md").read_text()
    picture = architecture_section(text, "## Layers").split("```")[1]
    drawn = [" | ".join(line.split("  ")[0].strip().split(" | ")) for line in picture.splitlines()
             if line.strip() and line.strip() != "↓"]
    assert drawn == [" | ".join(part.strip() for part in layer.split("|")) for layer in layers]


def test_architecture_names_every_package_and_module_once():
    text = (ROOT / "docs" / "architecture.md").read_text()
    table = architecture_section(text, "## Packages")
    package = ROOT / "nlbench"
    folders = {f"nlbench/{p.name}/": p for p in package.iterdir()
               if (p / "__init__.py").exists() and not p.is_symlink()}
    expected = [*folders, "methods/", "backbones/"]
    expected += [f"nlbench/{p.name}" for p in sorted(package.glob("*.py")) if not p.name.startswith("__")]
    rows = re.findall(r"^\| `([^`]+)`", table, flags=re.M)
    assert sorted(rows) == sorted(expected), "docs/architecture.md's package table: one row per package"
    problems = []
    folders["backbones/"] = ROOT / "backbones"
    for name, folder in sorted(folders.items()):
        section = architecture_section(text, f"**`{name}`**")
        named = re.findall(r"`([a-z_0-9]+\.py)`", section)
        modules = sorted(p.name for p in folder.glob("*.py") if p.name != "__init__.py")
        for module in modules:
            if named.count(module) != 1:
                problems.append(f"{name}{module} named {named.count(module)} times")
        problems += [f"{name}{m} does not exist" for m in set(named) - set(modules) - {"__init__.py"}]
    assert not problems, "docs/architecture.md, module lists: " + "; ".join(problems) + \
        " (each module of the package gets one line under its package)"


def test_readme_methods_table_is_the_registry():
    """README's methods × modes table: one row per built-in method, with its registered label and modes."""
    import nlbench.methods  # noqa: F401  (registers the built-in methods)
    from nlbench.registry import METHODS

    text = (ROOT / "README.md").read_text()
    table = text[text.index("| method | row | lp | fft | lp-fft |"):].split("\n\n", 1)[0].splitlines()[2:]
    shown = {}
    for line in table:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        modes = tuple(mode for mode, mark in zip(("lp", "fft", "lp-fft"), cells[2:5], strict=True) if mark)
        shown[cells[0].strip("`")] = (cells[1], modes)
    built_in = {e.name: (e.meta["label"], tuple(sorted(e.meta["modes"], key=("lp", "fft", "lp-fft").index)))
                for e in METHODS if e.obj.__module__.startswith("nlbench.methods.")
                and e.meta.get("distribution") == "nlbench"}
    assert shown == built_in
