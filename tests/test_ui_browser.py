"""`mambast ui` in a real browser: the app served in-process on a free port with the bundled default model,
driven through Debian's Chromium by Playwright. Skipped only when /usr/bin/chromium is missing, never in CI.

MAMBAST_UI_SCREENSHOT=path saves the screenshot of the example run there (docs/ui.png is made this way)."""

from __future__ import annotations

import os
import re
import socket
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
from conftest import require
from PIL import Image
from playwright.sync_api import expect, sync_playwright

import mambast
from mambast.images import load_image
from mambast.inference import Controls, Stylizer
from mambast.ui.app import EXAMPLE_PAIR, build_app, launch

CHROMIUM = Path("/usr/bin/chromium")
TIMEOUT_MS = 120_000  # a shared 2-core machine: the first run compiles the native scan kernel
SIZE, SEED = 256, 7
pytestmark = pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")  # pandas deprecations inside Gradio


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def model():
    return mambast.load()


@pytest.fixture(scope="module")
def served(model):
    require(CHROMIUM.exists(), f"no Chromium at {CHROMIUM}: `apt-get install chromium` to run the browser test")
    app = build_app(model)
    url, public = launch(app, port=_free_port())
    assert public is None  # no share link by default
    yield url
    app.close()
    app.mambast_session.close()


@pytest.fixture(scope="module")
def browser_page(served):
    requests: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"], headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(TIMEOUT_MS)
        page.on("request", lambda r: requests.append(r.url))
        page.goto(served)
        page.wait_for_selector("#run")
        yield page, requests
        browser.close()


def _set_number(page, elem_id: str, value: int) -> None:
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")
    box.blur()


def _clear(page, elem_id: str) -> None:
    clear = page.locator(f"#{elem_id} button[aria-label='Clear']")
    if clear.count():
        clear.click()
    expect(page.locator(f"#{elem_id} input[type=file]")).to_have_count(1)


def _run(page, expected: re.Pattern) -> str:
    """Click Run, wait for the status box to show `expected` after the request; its text."""
    status = page.locator("#status textarea")
    page.evaluate("document.querySelector('#status textarea').value = ''")  # a fresh value must arrive
    page.click("#run")
    expect(status).to_have_value(expected, timeout=TIMEOUT_MS)
    return status.input_value()


def _result(page) -> Image.Image:
    src = page.locator("#result img").get_attribute("src")
    body = page.request.get(src).body()
    assert body[:8] == b"\x89PNG\r\n\x1a\n", "the result is not served as PNG"
    return Image.open(BytesIO(body)).convert("RGB")


def _only_local(requests: list[str], base: str) -> None:
    outside = [u for u in requests if not u.startswith((base, "data:", "blob:"))]
    assert not outside, f"the page contacted other hosts: {outside[:5]}"


def test_example_pair_in_browser(browser_page, served, model, tmp_path):
    page, requests = browser_page
    page.click("#example")
    expect(page.locator("#content-preview img")).to_be_visible()
    expect(page.locator("#style-preview img").first).to_be_visible()
    _set_number(page, "size", SIZE)
    _set_number(page, "seed", SEED)

    status = _run(page, re.compile(r"^Done in \d+\.\d\d s"))
    assert f"{SIZE} x {SIZE} px, seed {SEED}" in status
    out = _result(page)
    assert out.size == (SIZE, SIZE)  # the example content is 256 px: the size control reached the engine
    content = np.asarray(load_image(EXAMPLE_PAIR[0]), dtype=np.float64)
    assert np.abs(np.asarray(out, dtype=np.float64) - content).mean() > 10  # stylized, not the content
    # exactly the engine's output for these controls (PNG is lossless)
    engine = Stylizer(model, size=SIZE).stylize(EXAMPLE_PAIR[0], EXAMPLE_PAIR[1], Controls(seed=SEED))
    assert np.array_equal(np.asarray(out), np.asarray(engine))
    link = page.locator("#download a").first.get_attribute("href")
    assert link.endswith("/astronaut_stylized_renoir_gondola.png")

    shot = Path(os.environ.get("MAMBAST_UI_SCREENSHOT") or tmp_path / "ui.png")
    page.screenshot(path=str(shot), full_page=True)
    assert Image.open(shot).size[0] == 1280
    _only_local(requests, served)


def test_bad_upload_then_next_request(browser_page, served, tmp_path):
    page, requests = browser_page
    fake = tmp_path / "notes.jpg"
    fake.write_text("this is a text file, not a JPEG\n")
    _clear(page, "content-file")
    page.set_input_files("#content-file input[type=file]", str(fake))
    status = _run(page, re.compile(r"^Error: "))
    assert status == "Error: notes.jpg: not an image file Pillow can read"
    expect(page.locator("#result img")).to_have_count(0)  # the previous result is cleared

    # the app keeps serving: upload the real pair and run again
    _clear(page, "content-file")
    _clear(page, "style-files")
    page.set_input_files("#content-file input[type=file]", str(EXAMPLE_PAIR[0]))
    page.set_input_files("#style-files input[type=file]", [str(EXAMPLE_PAIR[1])])
    expect(page.locator("#content-preview img")).to_be_visible()
    assert _run(page, re.compile(r"^Done in ")).endswith(f"seed {SEED}.")
    assert _result(page).size == (SIZE, SIZE)
    _only_local(requests, served)
