"""Open a report page in headless Chromium (Playwright driving the system's browser, no download) and check
what a reader would see: every image decoded, every table with rows, no console error; optionally save a
screenshot.

The browser is Debian's ``chromium`` (``$NLBENCH_CHROMIUM`` or the first of chromium / chromium-browser /
google-chrome on PATH); Playwright's own browser builds are never fetched.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from nlbench.atomic import atomic_write_bytes
from nlbench.errors import ConfigError

# Flags for sandboxes and CI machines without a display, user namespace or network.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def find_chromium() -> str | None:
    """Path of the Chromium to drive, or None."""
    if os.environ.get("NLBENCH_CHROMIUM"):
        return os.environ["NLBENCH_CHROMIUM"]
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


@dataclass
class PageCheck:
    images: int = 0
    broken_images: list[str] = field(default_factory=list)  # src of each image whose naturalWidth is 0
    tables: int = 0
    empty_tables: list[str] = field(default_factory=list)  # caption of each table without body rows
    console_errors: list[str] = field(default_factory=list)  # console errors and uncaught page errors
    failed_requests: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.broken_images or self.empty_tables or self.console_errors or self.failed_requests)

    def summary(self) -> str:
        problems = [*(f"image not loaded: {s}" for s in self.broken_images),
                    *(f"table without rows: {c}" for c in self.empty_tables),
                    *(f"console: {e}" for e in self.console_errors),
                    *(f"request failed: {u}" for u in self.failed_requests)]
        head = f"{self.images} images, {self.tables} tables"
        return head + ("; all loaded, no console errors" if not problems else "; " + "; ".join(problems))


_CHECK_SCRIPT = """() => ({
  images: Array.from(document.images).map(i => ({src: i.getAttribute('src'), ok: i.complete && i.naturalWidth > 0})),
  tables: Array.from(document.querySelectorAll('table')).map(t => ({
    caption: t.caption ? t.caption.textContent : '', rows: t.querySelectorAll('tbody tr').length})),
})"""


def check_page(index: str | Path, *, screenshot: str | Path | None = None, width: int = 1280, height: int = 1600,
               full_page: bool = False, chromium: str | None = None, timeout_s: float = 60.0) -> PageCheck:
    """Load ``index`` from its file URL in headless Chromium and check it; save a PNG of the first
    ``width`` × ``height`` pixels (or the whole page) to ``screenshot``."""
    try:
        from playwright.sync_api import sync_playwright  # playwright: optional (the `browser` extra)
    except ImportError:
        raise ConfigError("checking the page needs Playwright: pip install playwright (it drives the system's "
                          "Chromium; no browser download)") from None
    executable = chromium or find_chromium()
    if executable is None:
        raise ConfigError(f"no Chromium found (looked for {', '.join(BROWSERS)} on PATH and $NLBENCH_CHROMIUM); "
                          "install Debian's chromium")
    url = Path(index).resolve().as_uri()
    result = PageCheck()
    with tempfile.TemporaryDirectory(prefix="nlbench-chromium-") as profile, sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            profile, executable_path=executable, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": width, "height": height}, offline=True)
        try:
            page = context.new_page()
            page.set_default_timeout(timeout_s * 1000)
            page.on("console", lambda m: result.console_errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: result.console_errors.append(str(e)))
            page.on("requestfailed", lambda r: result.failed_requests.append(r.url))
            page.goto(url, wait_until="load")
            found = page.evaluate(_CHECK_SCRIPT)
            result.images = len(found["images"])
            result.broken_images = [i["src"] for i in found["images"] if not i["ok"]]
            result.tables = len(found["tables"])
            result.empty_tables = [t["caption"] for t in found["tables"] if t["rows"] == 0]
            if screenshot is not None:
                Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(screenshot), full_page=full_page)
        finally:
            context.close()
    return result


def shrink_png(path: str | Path, *, width: int = 900, colours: int = 128) -> Path:
    """Scale a screenshot down to ``width`` pixels and quantise it to ``colours`` colours (a README-sized
    PNG); rewritten atomically."""
    with Image.open(path) as image:
        image = image.convert("RGB")
        if image.width > width:
            image = image.resize((width, round(image.height * width / image.width)), Image.LANCZOS)
        small = image.quantize(colors=colours, method=Image.Quantize.MEDIANCUT)
    buffer = io.BytesIO()
    small.save(buffer, format="PNG", optimize=True)
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)
