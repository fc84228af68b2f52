"""README's quick start, read by CI: the first command to run, and the table it should print.

    python3 .ci/readme_table.py command README.md          # print the first ```bash block of "## Quick start"
    python3 .ci/readme_table.py check README.md OUTPUT     # compare OUTPUT's table with README's

``check`` passes when the run's output holds a markdown table with README's caption start, column headers
and row labels; with NLBENCH_README_EXACT=1 every cell must equal README's too. Otherwise the cells that
differ are listed as a note: FFT numbers depend on the CPU's kernel level (records' ``determinism``).
Standard library only: it runs in the fresh virtualenv before anything else is known to be there.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path


def quick_start(readme: str) -> str:
    match = re.search(r"^## Quick start\n(.*?)(?=^## )", readme, flags=re.S | re.M)
    if not match:
        sys.exit("readme_table: README.md has no '## Quick start' section")
    return match.group(1)


def fenced(section: str, language: str) -> str:
    match = re.search(rf"^```{language}\n(.*?)^```", section, flags=re.S | re.M)
    if not match:
        sys.exit(f"readme_table: no ```{language} block in README's quick start")
    return match.group(1)


def table(text: str) -> tuple[str, list[str], list[list[str]]]:
    """(caption, header cells, body rows) of the last markdown table in ``text`` that follows a
    'quickstart:' caption line."""
    lines = text.splitlines()
    captions = [i for i, line in enumerate(lines) if line.startswith("quickstart: ")]
    if not captions:
        sys.exit("readme_table: no 'quickstart: …' table caption in the text")
    start = captions[-1]
    block = []
    for line in lines[start + 1:]:
        if line.startswith("|"):
            block.append(line)
        elif block:
            break
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in block]
    if len(rows) < 3:
        sys.exit("readme_table: the caption is not followed by a markdown table")
    return lines[start], rows[0], rows[2:]


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "command":
        print(fenced(quick_start(Path(argv[1]).read_text()), "bash").strip())
        return 0
    if len(argv) != 3 or argv[0] != "check":
        sys.exit(__doc__)
    caption, header, rows = table(fenced(quick_start(Path(argv[1]).read_text()), "text"))
    got_caption, got_header, got_rows = table(Path(argv[2]).read_text())
    problems = []
    if got_caption.split(";")[0] != caption.split(";")[0]:
        problems.append(f"caption {got_caption!r}, README {caption!r}")
    if got_header != header:
        problems.append(f"columns {got_header}, README {header}")
    if [r[0] for r in got_rows] != [r[0] for r in rows]:
        problems.append(f"rows {[r[0] for r in got_rows]}, README {[r[0] for r in rows]}")
    if problems:
        print("README's first command printed a different table:\n  " + "\n  ".join(problems))
        return 1
    differ = [f"{row[0]} / {header[j]}: {got[j]} (README {row[j]})"
              for row, got in zip(rows, got_rows, strict=True) for j in range(1, len(row)) if got[j] != row[j]]
    if differ and os.environ.get("NLBENCH_README_EXACT") == "1":
        print("README's table differs from the run's (NLBENCH_README_EXACT=1):\n  " + "\n  ".join(differ))
        return 1
    print(f"README's first command printed the quickstart table: {len(got_rows)} rows × {len(header) - 1} columns"
          + (f"; {len(differ)} cell(s) differ from README's: " + "; ".join(differ) if differ else
             "; every cell equals README's"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
