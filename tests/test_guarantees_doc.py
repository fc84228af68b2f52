"""docs/guarantees.md backs every promise with a named test: each name it gives must exist."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_every_test_named_in_the_guarantees_page_exists():
    text = (ROOT / "docs" / "guarantees.md").read_text()
    named = []
    for cell in re.findall(r"`([^`]*::[^`]+)`", text):
        file, _, name = cell.partition("::")
        named.append((file or named[-1][0], name))
    assert len(named) >= 25
    defined: dict[str, set[str]] = {}
    for file, name in named:
        if file not in defined:
            tree = ast.parse((ROOT / "tests" / file).read_text())
            defined[file] = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
        assert name in defined[file], f"docs/guarantees.md names {file}::{name}, which does not exist"
