"""The real server and its page in headless Chromium (Debian's ``chromium`` package, driven by
Playwright through ``executable_path``: no browser download). Writes the README screenshot."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import REPO

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOT = REPO / "docs" / "images" / "serve-page.png"

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="needs Debian's chromium (apt-get install -y chromium; .ci/run installs it)"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(indexes: Path, *index_args: str):
    """Index with ``index_args`` (if any) into ``indexes``, serve it; yields the URL."""
    env = {**os.environ, "REID_SEARCH_INDEXES": str(indexes)}
    cli = [sys.executable, str(REPO / "cli.py")]
    if index_args:
        subprocess.run([*cli, "index", *index_args, "-q"], env=env, check=True)
    port = free_port()
    proc = subprocess.Popen([*cli, "serve", "--port", str(port)], env=env, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(f"{url}/api/health", timeout=1)
            break
        except OSError:
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail(f"server did not start: {proc.stderr.read().decode()}")
    yield url
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture()
def server(cuhk_test, tmp_path):
    yield from serve(tmp_path / "indexes", str(cuhk_test), "--name", "cuhk03-test")


@pytest.fixture()
def world_server(synth_root, tmp_path):
    from tests.test_journeys import write_world_csv

    data = synth_root / "bbox_test"
    times = write_world_csv(data, tmp_path / "times.csv")
    yield from serve(
        tmp_path / "indexes", str(data), "--name", "world", "--layout", "unlabelled", "--metadata", str(times)
    )


def wait_until(page, expression: str, seconds: float = 30.0) -> None:
    """Poll a JavaScript expression (evaluated over the DevTools protocol, which the page's
    Content-Security-Policy does not block) until it is true."""
    import time

    deadline = time.time() + seconds
    while not page.evaluate(expression):
        assert time.time() < deadline, f"not true after {seconds:g} s: {expression}"
        time.sleep(0.1)


@contextmanager
def page_of(url: str, **page_options):
    """Headless Chromium on the page at ``url``, its gallery list loaded."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(**page_options)
        page.goto(url)
        page.wait_for_selector("#gallery option", state="attached")
        try:
            yield page
        finally:
            browser.close()


def test_page_uploads_a_crop_and_shows_ranked_thumbnails(server, cuhk_test, mars_samples):
    probe = sorted((cuhk_test / "0750").glob("0750C1*.jpg"))[0]
    with page_of(server, viewport={"width": 1280, "height": 900}) as page:
        page.fill("#top-k", "5")
        page.fill("#exclude", "1")  # the query's own camera: answers come from camera 2
        page.set_input_files("#files", str(probe))
        page.wait_for_selector(".row.result figure img")
        # the page's content policy forbids eval, which wait_for_function needs: poll from here
        wait_until(
            page,
            "[...document.querySelectorAll('.row.result img')].every(i => i.complete && i.naturalWidth > 0)",
        )
        rows = page.locator(".row.result")
        assert rows.count() == 5
        assert "#1" in rows.first.inner_text() and "0750" in page.locator("#results").inner_text()
        assert "cam 1" not in page.locator("#results").inner_text()
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOT), full_page=True)
        page.click("#tab-compare")
        page.set_input_files("#image-a", str(mars_samples / "1.jpg"))
        page.set_input_files("#image-b", str(mars_samples / "2.jpg"))
        wait_until(page, "document.getElementById('compare-result').textContent.includes('similarity')")
    assert SCREENSHOT.stat().st_size > 10_000 and Path(SCREENSHOT).read_bytes()[:4] == b"\x89PNG"


def test_the_journey_view_lists_the_visits_in_time_order_by_keyboard(world_server, synth_root, tmp_path):
    """The "Where did they go?" tab, reached with the keyboard, traces an uploaded crop: the
    person's three visits in time order, each with its thumbnail, and the camera changes."""
    probe = next((synth_root / "bbox_test").rglob("0004C1T0001F002.jpg"))
    with page_of(world_server) as page:
        page.focus("#tab-trace")
        page.keyboard.press("Enter")
        assert page.is_visible("#trace") and not page.is_visible("#search")
        page.set_input_files("#trace-files", str(probe))
        page.wait_for_selector("#visits li")
        wait_until(
            page, "[...document.querySelectorAll('#visits img')].every(i => i.complete && i.naturalWidth > 0)"
        )
        visits = page.locator("#visits li")
        assert visits.count() == 3
        assert [visits.nth(i).inner_text().split(" · ")[0].strip() for i in range(3)] == [
            "camera 1",
            "camera 2",
            "camera 3",
        ]
        assert "camera 1 → 2" in page.locator("#transitions").inner_text()
        page.focus("#trace-bundle")  # the evidence bundle, by keyboard too
        with page.expect_download() as download:
            page.keyboard.press("Enter")
        bundle = tmp_path / "journey.zip"
        download.value.save_as(bundle)
    checked = subprocess.run([sys.executable, str(REPO / "cli.py"), "verify-bundle", str(bundle)],
                             capture_output=True, text=True)  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "3 visit" in zipfile.ZipFile(bundle).read("report.html").decode()


def test_the_search_box_finds_people_by_description_by_keyboard(world_server):
    """Typing a description and pressing Enter lists answers, each with the terms it fits and
    their probabilities (the world was indexed with the package's attribute head)."""
    with page_of(world_server) as page:
        page.focus("#description")
        page.keyboard.type("man, no hat")
        page.keyboard.press("Enter")
        page.wait_for_selector("#results .result")
        fits = page.locator("#results .fits").first.inner_text()
        assert fits.startswith("fits: man ") and "no hat" in fits and "%" in fits
        assert "answers fitting: man = male; no hat = not hat" in page.locator("#status").inner_text()
        page.fill("#description", "purpel top")
        page.keyboard.press("Enter")
        wait_until(page, "document.querySelector('#status').textContent.includes('closest known: purple')")
