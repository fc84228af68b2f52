"""The report page in a real headless Chromium (Debian's chromium, driven by Playwright): every image
decodes, every table has rows, the console stays clean; and the check catches a page where they don't."""

from __future__ import annotations

import pytest
from _report_records import write_records

from nlbench.cli.main import main
from nlbench.report.browser import check_page, find_chromium

pytest.importorskip("playwright.sync_api", reason="pip install playwright (drives the system's Chromium)")
pytestmark = pytest.mark.skipif(find_chromium() is None, reason="no Chromium on PATH (Debian: apt install chromium)")


def test_report_page_loads_in_chromium(write_grid, tmp_path, capsys):
    grid = write_grid("cifar", datasets=["cifar100"], backbones=["vit_b16"],
                      noise=[{"model": "sym", "rate": 0.2}, {"model": "sym", "rate": 0.6}],
                      methods=[{"method": "ce", "mode": "fft"}, {"method": "ce", "mode": "lp"},
                               {"method": "dividemix", "mode": "lp"}, {"method": "turn", "mode": "lp-fft"}],
                      seeds=(0, 1), train={"save_finetuned_features": True})
    write_records(grid, tmp_path / "runs")
    shot = tmp_path / "shot.png"
    assert main(["report", "--grid", grid, "--results", str(tmp_path / "runs"), "--out", str(tmp_path / "out"),
                 "--screenshot", str(shot)]) == 0
    # 6 figures; tables: 2 leaderboards, paper delta, ranks, best − last, last clean set, cost, k-NN.
    assert "6 images, 8 tables; all loaded, no console errors" in capsys.readouterr().out
    html = (tmp_path / "out" / "index.html").read_text()
    assert html.count("<img ") == 6 and html.count("<table>") == 8
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    with Image.open(shot) as image:
        assert image.width == 900  # --screenshot-width's default
    check = check_page(tmp_path / "out" / "index.html")
    assert check.ok and check.images == 6 and check.tables == 8


def test_check_catches_broken_images_empty_tables_and_console_errors(tmp_path):
    page = tmp_path / "index.html"
    page.write_text("<!DOCTYPE html><html><body><img src='figures/missing.png'>"
                    "<table><caption>empty</caption><thead><tr><th>a</th></tr></thead><tbody></tbody></table>"
                    "<script>console.error('boom')</script></body></html>")
    check = check_page(page)
    assert not check.ok
    assert check.broken_images == ["figures/missing.png"]
    assert check.empty_tables == ["empty"]
    assert "boom" in check.console_errors
