"""The web page in a real headless Chromium (Playwright driving Debian's /usr/bin/chromium).

Search, open a photo, see its boxes; the duplicate groups; a video summary; the API key
prompt. Screenshots are kept under the test's temporary folder (their paths are printed).
The system Chromium is installed by ``make system-deps``; without it these tests skip.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from detforge.library.web.app import create_library_app

from .webserver import serving

CHROMIUM = Path(os.environ.get("DETFORGE_CHROMIUM", "/usr/bin/chromium"))
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-sync"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: run `make system-deps` (installs Debian chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("library-screenshots")
    print(f"\nlibrary page screenshots: {folder}")
    return folder


def wait_until(page: Any, script: str, timeout_s: float = 20.0) -> None:
    """Poll ``script`` (a JS expression) until it is true. ``page.wait_for_function`` would
    evaluate a string inside the page, which the page's CSP (no 'unsafe-eval') forbids."""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(f"() => Boolean({script})"):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {script}")
        time.sleep(0.05)


def _detections(db: Path, path: str) -> int:
    con = sqlite3.connect(db)
    try:
        return int(con.execute("SELECT count(*) FROM detections d JOIN files f ON "
                               "f.hash = d.hash WHERE f.path = ? AND d.frame = -1",
                               (path,)).fetchone()[0])
    finally:
        con.close()


def test_search_open_a_photo_and_see_its_boxes(browser: Any, shots: Path,
                                               indexed: tuple[Path, Path, dict[str, Any]]
                                               ) -> None:
    _, db, m = indexed
    p = m["paths"]
    errors: list[str] = []
    with serving(create_library_app(db)) as url:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        page.goto(url)
        page.wait_for_selector(".card")
        assert page.locator(".card").count() == 13
        assert page.inner_text("#count") == "13 files"
        page.fill("#q", "photos with a dog from 2024 taken with the iPhone")
        page.click("#search")
        wait_until(page, "document.querySelector('#count').textContent === '4 files'")
        paths = {page.locator(".card").nth(i).get_attribute("data-path") for i in range(4)}
        assert paths == {p["dog24"], p["blurry"], p["heic"], p["near"]}
        wait_until(page, "[...document.querySelectorAll('.card img')].every("  # thumbnails
                         "i => i.complete && i.naturalWidth > 0)")
        page.screenshot(path=str(shots / "search.png"), full_page=True)
        page.click(f".card[data-path='{p['dog24']}']")
        page.wait_for_selector("#detail:not([hidden]) svg#photo rect.box")
        n_boxes = page.locator("svg#photo rect.box").count()
        assert n_boxes == _detections(db, p["dog24"]) > 0
        assert {page.locator("rect.box").nth(i).get_attribute("data-label")
                for i in range(n_boxes)} == {"dog"}
        wait_until(page, "document.querySelector('svg#photo image')"
                         ".getAttribute('href')?.startsWith('blob:')")
        assert page.get_attribute("svg#photo", "viewBox") == "0 0 160 120"
        assert "iPhone 15 Pro" in page.inner_text("#detail-info")
        page.screenshot(path=str(shots / "photo-with-boxes.png"))
        page.click("#close")
        page.click("#tab-duplicates")
        page.wait_for_selector("#dup-groups .group")
        assert page.locator("#dup-groups .group").count() == 2
        assert page.locator(".member.keep").count() == 2
        page.screenshot(path=str(shots / "duplicates.png"), full_page=True)
        page.click("#tab-photos")
        page.select_option("#kind", "video")
        page.fill("#q", "")
        page.click("#search")
        wait_until(page, "document.querySelector('#count').textContent === '2 files'")
        page.click(f".card[data-path='{p['video1']}']")
        page.wait_for_selector("#video-objects tr")
        assert "dog" in page.inner_text("#video-objects")
        page.screenshot(path=str(shots / "video-summary.png"))
        page.close()
    assert not errors, errors
    for name in ("search", "photo-with-boxes", "duplicates", "video-summary"):
        assert (shots / f"{name}.png").stat().st_size > 1000


def test_the_page_asks_for_the_api_key(browser: Any, shots: Path,
                                       indexed: tuple[Path, Path, dict[str, Any]]) -> None:
    _, db, _ = indexed
    with serving(create_library_app(db, api_key="s3cret")) as url:
        page = browser.new_page()
        page.goto(url)
        page.wait_for_selector("#key-box:not([hidden])")
        assert page.locator(".card").count() == 0
        page.fill("#api-key", "s3cret")
        page.click("#key-save")
        page.wait_for_selector(".card")
        assert page.locator(".card").count() == 13
        page.screenshot(path=str(shots / "with-key.png"))
        page.close()
