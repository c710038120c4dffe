"""The hosted page in a real browser: headless Chromium against a real server, on a phone's
screen and a desktop's. Screenshots go to test-artifacts/screenshots/."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import shutil
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from playwright.async_api import Browser, Page, async_playwright

from mmsgate import settings as settings_mod
from mmsgate.api.app import build_services, create_app
from mmsgate.store import accounts
from mmsgate.store.blobs import FileBlobStore
from mmsgate.store.db import Database
from tests.conftest import Gateway, MediaServer
from tests.web.conftest import Clock, Hosted, every_kind, fall_back, send

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
SIZES = [(360, 800), (1280, 800)]


@dataclasses.dataclass
class Server:
    """A real mmsgate server on 127.0.0.1, what it was started with, and its account."""

    base: str
    settings: settings_mod.Settings
    clock: Clock
    api_key: str


@dataclasses.dataclass
class Site:
    """A real mmsgate server on 127.0.0.1, and the pages of two messages that fell back."""

    base: str
    live: Hosted
    expired: Hosted


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """uvicorn serving the app on a free port, in a thread of its own, with a fixed clock."""
    settings = settings_mod.load(
        env={
            "MMSGATE_DATA_DIR": str(tmp_path / "data"),
            "MMSGATE_DATABASE_URL": f"sqlite:///{tmp_path / 'mmsgate.db'}",
            "MMSGATE_ALLOW_PRIVATE_NETWORKS": "1",
        }
    )
    api_key = asyncio.run(_prepare(settings))
    clock = Clock()
    services = dataclasses.replace(build_services(settings, Database(settings.db_url)), clock=clock)
    config = uvicorn.Config(create_app(settings, services), log_config=None, lifespan="on")
    server = uvicorn.Server(config)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive(), "the server stopped while starting"
        assert time.monotonic() < deadline, "the server did not start in time"
        time.sleep(0.01)
    try:
        yield Server(f"http://127.0.0.1:{sock.getsockname()[1]}", settings, clock, api_key)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


async def _prepare(settings: settings_mod.Settings) -> str:
    """A migrated database with an account: its API key."""
    db = Database(settings.db_url)
    await db.migrate()
    created = await accounts.create(db, "acme", senders=["28444"], service_ids=["32113"])
    await db.close()
    assert created is not None
    return created.api_key


@pytest.fixture
async def site(server: Server, media_server: MediaServer) -> AsyncIterator[Site]:
    """Two recipients of one sendMMS through the server's API: one whose page holds a part
    of every kind, one whose link expired yesterday."""
    async with httpx.AsyncClient(base_url=server.base, timeout=30) as client:
        gw = Gateway(client, None, server.api_key, None)
        live_id, expired_id = await send(gw, media_server, "17745550100", "17745550101")
    db = Database(server.settings.db_url)
    try:
        slides = await every_kind(FileBlobStore(server.settings.blob_dir))
        now = server.clock()
        live = await fall_back(db, live_id, slides, now=now, expires=now + dt.timedelta(days=30))
        gone = await fall_back(db, expired_id, slides, now=now, expires=now - dt.timedelta(days=1))
        yield Site(server.base, live, gone)
    finally:
        await db.close()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (scripts/test does)")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        await browser.close()


class Watch:
    """What went wrong while a page loaded: console errors, failed requests, 4xx/5xx."""

    def __init__(self, page: Page, expected: frozenset[int] = frozenset()) -> None:
        """`expected`: statuses that are the point of the test (the document's own 410),
        which Chromium also reports on the console."""
        self.problems: list[str] = []
        self.expected = expected
        page.on("console", lambda m: m.type in ("error", "warning") and self._console(m.text))
        page.on("pageerror", lambda e: self._add("pageerror", str(e)))
        page.on("requestfailed", lambda r: self._add("failed", f"{r.url} {r.failure}"))
        page.on(
            "response",
            lambda r: r.status >= 400 and r.status not in expected and self._add("http", r.url),
        )

    def _console(self, text: str) -> None:
        if not any(f"status of {status} " in text for status in self.expected):
            self._add("console", text)

    def _add(self, kind: str, text: str) -> None:
        self.problems.append(f"{kind}: {text}")


@pytest.mark.parametrize(("width", "height"), SIZES)
async def test_the_page_works_in_a_browser(
    site: Site, browser: Browser, width: int, height: int
) -> None:
    """On a phone and on a desktop: the page comes gzipped and decodes, every slide shows in
    order, the image loads (the small rendition on the phone, the full one on the desktop,
    fetched at high priority), the video and the audio load their metadata, nothing fails
    or scrolls sideways, and it passes the accessibility checks (alt text, accessible
    names, text contrast ≥ 4.5:1)."""
    context = await browser.new_context(viewport={"width": width, "height": height})
    page = await context.new_page()
    watch = Watch(page)
    answer = await page.goto(f"{site.base}/m/{site.live.token}", wait_until="load")
    assert answer is not None
    assert answer.status == 200
    assert (await answer.all_headers())["content-encoding"] == "gzip"
    await shows_every_slide_in_order(page)
    await page.wait_for_function(
        "() => [...document.images].every(i => i.complete && i.naturalWidth > 0)", timeout=15_000
    )
    shown = await page.eval_on_selector("img", "i => [i.currentSrc, i.fetchPriority]")
    assert shown[0].endswith("?size=small" if width < 600 else f"/media/{site.live.token}/1")
    assert shown[1] == "high"
    await page.wait_for_function(
        "() => [...document.querySelectorAll('video, audio')]"
        ".every(m => m.readyState >= 1 && m.duration > 0)",
        timeout=15_000,
    )
    players = await page.eval_on_selector_all(
        "video, audio", "els => els.map(m => [m.tagName, m.readyState, m.duration])"
    )
    assert [p[0] for p in players] == ["VIDEO", "AUDIO"]
    assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    await passes_accessibility_checks(page)
    await page.evaluate("window.scrollTo(0, 0)")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=SCREENSHOTS / f"page-{width}x{height}.png", full_page=True)
    assert watch.problems == []
    await context.close()


async def test_the_expired_page_in_a_browser(site: Site, browser: Browser) -> None:
    """An expired link shows a readable 'This content has expired' page on a phone, with
    no media requested and nothing failing."""
    context = await browser.new_context(viewport={"width": 360, "height": 800})
    page = await context.new_page()
    watch = Watch(page, expected=frozenset({410}))
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    answer = await page.goto(f"{site.base}/m/{site.expired.token}", wait_until="load")
    assert answer is not None
    assert answer.status == 410
    heading = page.get_by_role("heading", level=1)
    assert await heading.inner_text() == "This content has expired"
    assert await heading.is_visible()
    assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    await passes_accessibility_checks(page)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=SCREENSHOTS / "expired-360x800.png", full_page=True)
    assert requests == [f"{site.base}/m/{site.expired.token}"]
    assert watch.problems == []
    await context.close()


async def shows_every_slide_in_order(page: Page) -> None:
    """Each slide, scrolled to, is visible, and lies below the one before."""
    sections = page.locator("section")
    assert await sections.count() == 3
    tops = []
    for i in range(3):
        section = sections.nth(i)
        await section.scroll_into_view_if_needed()
        assert await section.is_visible()
        assert await section.get_attribute("aria-label") == f"Part {i + 1} of 3"
        box = await section.bounding_box()
        assert box is not None
        assert box["height"] > 0
        tops.append(await section.evaluate("s => s.getBoundingClientRect().top + window.scrollY"))
    assert tops == sorted(tops)
    texts = await sections.evaluate_all("ss => ss.map(s => s.innerText)")
    assert "spring sale" in texts[0]
    assert "<script>alert('x')</script>" in texts[1]
    assert "Add to calendar" in texts[2]
    link = page.get_by_role("link", name="https://shop.example/sale?a=1&b=2")
    assert await link.get_attribute("href") == "https://shop.example/sale?a=1&b=2"


# Accessible names as Chromium computes them, and the contrast of every piece of text
# against the background it is drawn on (WCAG 2.x relative luminance).
_NAMES = """() => [...document.querySelectorAll('a, button, img, video, audio, input, select')]
  .filter(e => !e.parentElement.closest('video, audio'))
  .map(e => [e.tagName, e.tagName === 'IMG' ? e.getAttribute('alt') : (
     e.getAttribute('aria-label') || e.innerText || e.getAttribute('title') || '').trim()])"""
_CONTRAST = """() => {
  const rgba = c => { const p = c.match(/[\\d.]+/g).map(Number); return p.length > 3 ? p : [...p, 1]; };
  const lum = ([r, g, b]) => [r, g, b].map(v => { v /= 255;
    return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; })
    .reduce((sum, v, i) => sum + v * [0.2126, 0.7152, 0.0722][i], 0);
  const behind = el => { for (let e = el; e; e = e.parentElement) {
    const c = rgba(getComputedStyle(e).backgroundColor); if (c[3] > 0) return c; }
    return [255, 255, 255, 1]; };
  const out = []; const seen = new Set();
  const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walk.nextNode()) {
    const el = walk.currentNode.parentElement;
    if (!walk.currentNode.textContent.trim() || seen.has(el) || el.closest('video, audio')) continue;
    seen.add(el);
    const style = getComputedStyle(el);
    if (style.visibility === 'hidden' || style.display === 'none') continue;
    const [a, b] = [lum(rgba(style.color)), lum(behind(el))];
    out.push([el.tagName, walk.currentNode.textContent.trim().slice(0, 30),
              (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05), Number(style.opacity)]);
  }
  return out; }"""


async def passes_accessibility_checks(page: Page) -> None:
    """Every image has alt text, every link and player a name, the page a language and a
    title, and all text a contrast of at least 4.5:1."""
    names: list[list[str]] = await page.evaluate(_NAMES)
    assert all(name for _, name in names), names
    assert await page.evaluate("document.documentElement.lang") == "en"
    assert await page.title()
    contrast: list[list[Any]] = await page.evaluate(_CONTRAST)
    assert contrast
    low = [c for c in contrast if c[2] < 4.5 or c[3] < 1]
    assert low == [], low
