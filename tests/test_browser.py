"""The app in a real browser (issue: app §6): Playwright drives Debian's Chromium (``apt-get install -y chromium``;
Playwright's own browser download does not work offline, hence ``executable_path``).

Upload an image, move tau and bits and see the outputs change, see the error toast of a bad file, save a
screenshot: to ``$BDFLOW_SCREENSHOT`` when set (then with the real checkpoints of ``checkpoints/`` and a face from
``assets/``, for the README: ``BDFLOW_SCREENSHOT=docs/screenshot.png python -m pytest -q tests/test_browser.py``),
else to a temporary folder with tiny untrained models (fast).
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

import app as app_module
from bdflow.demo import Demo, model_sources
from tests.conftest import REPO
from tests.test_app import free_port, tiny_checkpoints

sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = os.environ.get("BDFLOW_CHROMIUM", "/usr/bin/chromium")
SCREENSHOT = os.environ.get("BDFLOW_SCREENSHOT")
TIMEOUT_MS = 120_000 if SCREENSHOT else 60_000

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).is_file(),
                                reason=f"no Chromium at {CHROMIUM} (apt-get install -y chromium, or set BDFLOW_CHROMIUM)")


@pytest.fixture(scope="module")
def served(tmp_path_factory, face_paths):
    """(url, image to upload, LR size) of the app on a free localhost port."""
    root = tmp_path_factory.mktemp("browser")
    if SCREENSHOT:
        sources, image, max_side = model_sources(REPO / "checkpoints"), REPO / "assets" / "face-male-012712.jpg", 1024
    else:
        sources, max_side = tiny_checkpoints(root / "checkpoints"), 128
        image = root / "face.png"
        Image.open(face_paths[4]).convert("RGB").resize((96, 80)).save(image)
    demo = Demo.from_sources(sources, max_side=max_side, device="cpu")
    examples = root / "examples"
    examples.mkdir()
    for name in ("church.jpg", "cat-125.jpg"):
        shutil.copy(REPO / "assets" / name, examples / name)
    blocks = app_module.configure(app_module.build(demo, examples_dir=REPO / "assets" if SCREENSHOT else examples))
    port = free_port()
    blocks.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                  **app_module.launch_kwargs())
    scale = demo.rescaler(demo.labels[0]).scale
    w, h = Image.open(image).size
    try:
        yield f"http://127.0.0.1:{port}/", image, (math.ceil(h / scale), math.ceil(w / scale))
    finally:
        blocks.close()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            yield b
        finally:
            b.close()


def set_number(page, elem_id: str, value) -> None:
    """Type into a slider's number box and commit it, as a user does."""
    box = page.locator(f"#{elem_id} input[data-testid=number-input]")
    box.fill(str(value))
    box.press("Enter")
    box.blur()


def recon_src(page) -> str:
    return page.locator("#recon img").first.get_attribute("src") or ""


def numbers(page) -> str:
    return page.locator("#numbers").inner_text()


def test_upload_move_sliders_error_toast_screenshot(served, browser, tmp_path):
    url, image, (lr_h, lr_w) = served
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url)
    page.locator("#hr-input input[type=file]").set_input_files(str(image))
    page.wait_for_function("document.querySelector('#numbers')?.innerText.includes('bicubic round trip')")
    first_src, first_numbers = recon_src(page), numbers(page)
    assert first_src and f"{lr_h * lr_w * 3} (Y) + {math.ceil(lr_h * lr_w / 8)} (B)" in first_numbers
    assert page.locator("#zhist img").count() == 1 and page.locator("#bam img").count() == 1
    assert page.locator("#lr-true img").count() == 1 and page.locator("#b img").count() == 1

    set_number(page, "tau", 0.2)  # tau: a new reconstruction, same bytes
    page.wait_for_function("src => { const i = document.querySelector('#recon img'); return i && i.src !== src; }",
                           arg=first_src)
    page.wait_for_function("document.querySelector('#numbers')?.innerText.includes('bicubic round trip')")

    set_number(page, "bits", 3)  # bits: B costs three times as much
    b3 = f"(Y) + {math.ceil(lr_h * lr_w * 3 / 8)} (B)"
    page.wait_for_function(f"document.querySelector('#numbers')?.innerText.includes('{b3}')")
    page.wait_for_function("document.querySelector('#numbers')?.innerText.includes('bicubic round trip')")
    assert recon_src(page) != first_src and numbers(page) != first_numbers

    page.locator("#div-btn").click()
    page.wait_for_selector("#diversity img")

    shot = Path(SCREENSHOT) if SCREENSHOT else tmp_path / "screenshot.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000

    bad = tmp_path / "holiday.png"
    bad.write_text("this is not an image")
    page = browser.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url)
    page.locator("#hr-input input[type=file]").set_input_files(str(bad))
    toast = page.get_by_text("holiday.png is not an image Pillow can read")
    toast.first.wait_for(state="visible")
    assert "Traceback" not in page.content()
