"""The page in a real browser: Playwright drives Debian's chromium (never a downloaded one)
against `clamp serve` on the tiny model: search, sheet music, play/stop, upload-and-classify,
and a screenshot for the README (docs/img/serve.png).

Set CLAMP_SERVE_MODEL and CLAMP_SERVE_INDEX to run it on a real model and dataset instead."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.conftest import free_port

CHROMIUM = Path(os.environ.get("CLAMP_CHROMIUM", "/usr/bin/chromium"))
ROOT = Path(__file__).resolve().parents[2]
# Only when asked (CLAMP_SERVE_SCREENSHOT=docs/img/serve.png, with the corpus model): a test run
# must not rewrite a tracked file with the tiny model's picture. It is always saved under tmp_path.
SCREENSHOT = Path(os.environ["CLAMP_SERVE_SCREENSHOT"]) if os.environ.get("CLAMP_SERVE_SCREENSHOT") else None
TUNES = (
    "X:1\nT:Upload Jig\nR:jig\nM:6/8\nL:1/8\nK:D\n|:dAF DFA|dAF GFE|dAF DFA|GFE D3:|\n\n"
    "X:2\nT:Upload Reel\nR:reel\nM:4/4\nL:1/8\nK:G\n|:GABc dBGB|cBAG FGAB|GABc dBGB|AGFA G4:|\n"
)
# headless audio: no user gesture needed, and a fake audio device where the machine has none
CHROMIUM_ARGS = [
    "--autoplay-policy=no-user-gesture-required",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--disable-gpu",
]

pytestmark = pytest.mark.slow


def _skip_reason() -> str | None:
    if not CHROMIUM.is_file():
        return (
            f"no chromium at {CHROMIUM}: infra/bootstrap.sh installs Debian's chromium and chromium-driver with apt-get"
        )
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[dev]')"
    from clamp.serve.app import ABCJS_DIST

    if not (ABCJS_DIST / "abcjs-basic-min.js").is_file():
        if shutil.which("npm") is not None:  # bootstrap installs it wherever it can: missing is a fault
            pytest.fail("abcjs is not installed although npm is: run `npm ci` in clamp/serve/static")
        return "abcjs is not installed and npm is missing: infra/bootstrap.sh runs `npm ci` in clamp/serve/static"
    return None


@pytest.fixture(scope="module")
def server_url(request):
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    import uvicorn

    from clamp.serve.app import create_app
    from clamp.serve.settings import ServeSettings

    model = os.environ.get("CLAMP_SERVE_MODEL")
    index = os.environ.get("CLAMP_SERVE_INDEX")
    if not (model and index):
        model, index = request.getfixturevalue("tiny_model"), request.getfixturevalue("tiny_dataset")
    port = free_port()
    app = create_app(ServeSettings(model_dir=model, dataset_dir=index))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    import httpx

    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    else:
        pytest.fail("the server did not become ready")
    yield url
    server.should_exit = True
    thread.join(15)


def _wait_until(page, expression: str, timeout: float = 60) -> None:
    """Poll a JavaScript expression (page.wait_for_function evaluates strings with eval, which the
    page's Content-Security-Policy forbids, as it should)."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"timed out waiting for {expression}"
        time.sleep(0.1)


def test_search_see_play_and_classify_in_the_browser(server_url, tmp_path):
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    upload = tmp_path / "two-tunes.abc"
    upload.write_text(TUNES)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1360, "height": 1000})
            page.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
            page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))
            page.goto(server_url)
            page.wait_for_selector("body[data-ready=true]", timeout=60_000)

            # search: at least 10 results, each drawn as an SVG score
            page.fill("#q", "a lively jig in D major")
            page.select_option("#k", "20")
            page.click("#search-button")
            page.wait_for_selector("body[data-rendered='20']", timeout=60_000)
            results = page.locator("#results > li.result")
            assert results.count() == 20
            assert page.locator("#results > li.result .score-sheet svg").count() == 20
            assert all(float(s) <= 1.0 for s in page.locator("#results .score").all_inner_texts())

            # play: abcjs's synth loads the server's note sounds and starts, with no console error
            results.nth(0).locator("button.play").click()
            _wait_until(page, "window.clampPlayer.state !== 'loading'")
            state = page.evaluate("window.clampPlayer")
            assert state["state"] == "playing", state
            assert "playing" in (results.nth(0).get_attribute("class") or "")
            time.sleep(0.5)
            results.nth(0).locator("button.stop").click()
            assert page.evaluate("window.clampPlayer.state") == "stopped"

            # upload and classify: a chart of label scores per tune
            page.set_input_files("#file", str(upload))
            page.fill("#labels", "jig, reel, waltz")
            page.click("#classify-button")
            page.wait_for_selector("#chart .tune .bar", timeout=60_000)
            assert page.locator("#chart .tune").count() == 2
            assert page.locator("#chart .tune .bar").count() == 6

            # the README's picture: the search results and the chart
            shot = tmp_path / "serve.png"
            page.evaluate("window.scrollTo(0, 0)")
            page.screenshot(path=str(shot))
            assert shot.stat().st_size > 10_000  # a real picture, not an empty page
            if SCREENSHOT is not None:
                SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(shot, SCREENSHOT)

            # 'more like this' replaces the results with neighbours of a tune
            first = results.nth(1).get_attribute("data-id")
            results.nth(1).locator("button.more").click()
            _wait_until(page, "document.querySelector('#status').textContent.includes('tunes like')")
            # the status line can change before the new list is in: wait for the list itself (the
            # old one holds `first`; the neighbours never do), then check it is a full page of them
            ids = "[...document.querySelectorAll('#results > li.result')].map(e => e.dataset.id)"
            _wait_until(page, f"!{ids}.includes({json.dumps(first)})")
            page.wait_for_selector("body[data-rendered='20']")
            assert first not in page.locator("#results > li.result").evaluate_all("els => els.map(e => e.dataset.id)")

            # the URL holds each search: back restores the text search, forward the neighbours
            assert parse_qs(urlsplit(page.url).query) == {"like": [first], "k": ["20"]}
            page.go_back()
            assert parse_qs(urlsplit(page.url).query) == {"q": ["a lively jig in D major"], "k": ["20"]}
            _wait_until(page, f"{ids}.includes({json.dumps(first)})")
            assert page.input_value("#q") == "a lively jig in D major"
            page.go_forward()
            _wait_until(page, f"!{ids}.includes({json.dumps(first)})")
            _wait_until(page, "document.querySelector('#status').textContent.includes('tunes like')")

            # a link to a search opens with its query and filters filled in and its results shown
            page.goto(f"{server_url}/?q=a+fast+reel&k=10&split=train")
            page.wait_for_selector("body[data-rendered='10']", timeout=60_000)
            assert (page.input_value("#q"), page.input_value("#k"), page.input_value("#split")) == (
                "a fast reel",
                "10",
                "train",
            )
            assert page.locator("#results > li.result").count() == 10
            assert all(t.endswith("· train") for t in page.locator("#results .meta").all_inner_texts())

        finally:
            browser.close()
    assert not errors, errors
