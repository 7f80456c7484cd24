"""Open an HTML report in headless Chromium and say what a reader would see wrong with it.

A page can pass every string test and still show a broken image icon, throw in the console or
paint nothing; only a browser tells. `check_page` loads a local file, records console errors,
page errors, failed and external requests, measures every <img>, checks local links, lists
headings and tables, takes a full-page screenshot and checks that it (and each image's area in
it) is not blank.

Fixtures: `chromium` (one browser context per session, from the system's Chromium; Playwright
never downloads a browser here) and `browser_page` (a fresh tab per test). Without Chromium or
Playwright they skip, unless $CI is set: then they fail, so CI cannot pass by skipping.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

import numpy as np
import pytest
from PIL import Image

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Page

CHROMIUM = "/usr/bin/chromium"  # Debian's package; $ATTIRE_CHROMIUM overrides
# A closed network refuses Chromium's background connections; these keep it from trying.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 900}
MIN_IMAGE_PX = 48  # a chart drawn smaller than this (CSS px) on either side is not readable
MIN_STD = 8.0  # grey-level standard deviation of a screenshot (0-255) below which it is blank
MIN_INK = 0.01  # share of non-white pixels below which a screenshot is blank
WHITE = 245  # a pixel whose grey level is at or above this counts as white

IMAGES_JS = """() => Array.from(document.images).map((img) => {
  const r = img.getBoundingClientRect();
  const s = getComputedStyle(img);
  return {src: img.getAttribute("src"), url: img.currentSrc || img.src, complete: img.complete,
          natural_width: img.naturalWidth, natural_height: img.naturalHeight,
          x: r.left + scrollX, y: r.top + scrollY, width: r.width, height: r.height,
          hidden: s.display === "none" || s.visibility === "hidden" || s.opacity === "0"};
})"""
LINKS_JS = """() => Array.from(document.querySelectorAll("a[href]")).map((a) => ({
  href: a.getAttribute("href"), url: a.href,
  same_page: a.protocol === location.protocol && a.pathname === location.pathname,
  anchor_found: !a.hash || document.getElementById(decodeURIComponent(a.hash.slice(1))) !== null,
}))"""
HEADINGS_JS = """() => Array.from(document.querySelectorAll("h1, h2, h3"))
  .map((h) => h.textContent.trim())"""


def chromium_path() -> str:
    return os.environ.get("ATTIRE_CHROMIUM") or shutil.which("chromium") or CHROMIUM


def _unavailable(reason: str) -> None:
    """Skip on a developer machine; fail in CI, where a skipped browser check hides a break."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so this is a failure, not a skip)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def chromium(tmp_path_factory) -> Iterator[BrowserContext]:
    """Headless Chromium with a fresh profile, shared by the session's browser tests."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed: pip install -e '.[dev]'")
    exe = chromium_path()
    if not Path(exe).is_file():
        _unavailable(
            f"Chromium not found at {exe}: apt-get install -y chromium, "
            "or set ATTIRE_CHROMIUM to a Chromium/Chrome binary"
        )
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            tmp_path_factory.mktemp("chromium-profile"),
            executable_path=exe,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport=VIEWPORT,
            device_scale_factor=1,
        )
        yield context
        context.close()


@pytest.fixture
def browser_page(chromium: BrowserContext) -> Iterator[Page]:
    page = chromium.new_page()
    yield page
    page.close()


@dataclass
class PageCheck:
    """What a browser saw on one page; `problems` is empty when a reader would see it right."""

    url: str
    title: str
    headings: list[str]
    tables: int
    images: list[dict[str, Any]]
    links: list[dict[str, Any]]
    screenshot: Path
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    external_requests: list[str] = field(default_factory=list)
    blank_areas: list[str] = field(default_factory=list)

    def image(self, pattern: str) -> list[dict[str, Any]]:
        """The images whose src matches the regular expression ``pattern``."""
        return [i for i in self.images if re.search(pattern, i["src"] or "")]

    def broken_images(self) -> list[str]:
        return [
            f"{i['src']}: not loaded"
            for i in self.images
            if not i["complete"] or i["natural_width"] == 0 or i["natural_height"] == 0
        ]

    def small_images(self) -> list[str]:
        return [
            f"{i['src']}: {'hidden' if i['hidden'] else 'shown'} at "
            f"{i['width']:.0f}x{i['height']:.0f} px"
            for i in self.images
            if i["hidden"] or min(i["width"], i["height"]) < MIN_IMAGE_PX
        ]

    def broken_links(self) -> list[str]:
        """Local links to a missing file, and links to an anchor the page does not have."""
        out = []
        for link in self.links:
            if link["same_page"] and not link["anchor_found"]:
                out.append(f"{link['href']}: no element with that id")
            elif link["url"].startswith("file:") and not link["same_page"]:
                target = Path(url2pathname(urlsplit(link["url"]).path))
                if not target.exists():
                    out.append(f"{link['href']}: {target} does not exist")
        return out

    def problems(self, headings: Sequence[str] = (), min_tables: int = 0) -> list[str]:
        """Every defect found, one line each; ``headings`` and ``min_tables``: what the page
        must show."""
        out = [f"console error: {e}" for e in self.console_errors]
        out += [f"page error: {e}" for e in self.page_errors]
        out += [f"failed request: {r}" for r in self.failed_requests]
        out += [
            f"external request (the page must work offline): {r}" for r in self.external_requests
        ]
        out += [f"broken image {b}" for b in self.broken_images()]
        out += [f"broken link {b}" for b in self.broken_links()]
        out += [f"unreadable image {s}" for s in self.small_images()]
        out += [f"blank in the screenshot: {b}" for b in self.blank_areas]
        out += [f"missing heading: {h!r}" for h in headings if h not in self.headings]
        if self.tables < min_tables:
            out.append(f"{self.tables} tables, expected at least {min_tables}")
        return out

    def assert_ok(self, **expected: Any) -> None:
        problems = self.problems(**expected)
        assert not problems, f"{self.url} (screenshot {self.screenshot}):\n" + "\n".join(problems)


def blank(image: Image.Image) -> str | None:
    """Why an image looks blank (flat grey levels or almost no ink), or None when it is not.

    From the grey-level histogram: a tall page's screenshot has tens of millions of pixels."""
    hist = np.asarray(image.convert("L").histogram(), np.float64)
    levels = np.arange(256)
    n = hist.sum()
    mean = (hist * levels).sum() / n
    std = float(np.sqrt((hist * (levels - mean) ** 2).sum() / n))
    ink = float(hist[:WHITE].sum() / n)
    if std < MIN_STD:
        return f"grey-level std {std:.1f} < {MIN_STD}"
    if ink < MIN_INK:
        return f"{ink:.2%} non-white pixels < {MIN_INK:.0%}"
    return None


def check_page(page: Page, html: Path, screenshot: Path, timeout_ms: int = 15_000) -> PageCheck:
    """Load ``html`` (a local file) in ``page``, wait for its load event, screenshot the whole
    page to ``screenshot`` (PNG) and return what was seen."""
    console: list[str] = []
    errors: list[str] = []
    failed: list[str] = []
    external: list[str] = []

    def on_console(message: Any) -> None:
        if message.type == "error":
            console.append(message.text)

    def on_error(error: Any) -> None:
        errors.append(str(error))

    def on_failed(request: Any) -> None:
        failed.append(f"{request.url} ({request.failure})")

    def refuse(route: Any) -> None:
        external.append(route.request.url)
        route.abort()

    listeners = {"console": on_console, "pageerror": on_error, "requestfailed": on_failed}
    for event, listener in listeners.items():
        page.on(event, listener)
    not_local = re.compile(r"^(?!file:|data:|about:)")
    page.route(not_local, refuse)
    url = Path(html).resolve().as_uri()
    try:
        page.goto(url, wait_until="load", timeout=timeout_ms)
        images = page.evaluate(IMAGES_JS)
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(screenshot), full_page=True)
    finally:  # the page may be reused for another check
        page.unroute(not_local, refuse)
        for event, listener in listeners.items():
            page.remove_listener(event, listener)
    blank_areas = []
    with Image.open(screenshot) as shot:
        if (why := blank(shot)) is not None:
            blank_areas.append(f"whole page: {why}")
        for img in images:
            box = (img["x"], img["y"], img["x"] + img["width"], img["y"] + img["height"])
            area = shot.crop(tuple(round(v) for v in box))
            if img["natural_width"] and area.width and area.height and (why := blank(area)):
                blank_areas.append(f"{img['src']}: {why}")
    return PageCheck(
        url=url,
        title=page.title(),
        headings=page.evaluate(HEADINGS_JS),
        tables=page.locator("table").count(),
        images=images,
        links=page.evaluate(LINKS_JS),
        screenshot=screenshot,
        console_errors=console,
        page_errors=errors,
        failed_requests=failed,
        external_requests=external,
        blank_areas=blank_areas,
    )
