"""The app in a real browser: Playwright drives Debian's Chromium (``apt-get install -y chromium``;
Playwright's own browser download does not work offline, hence ``executable_path``).

Upload an image, move tau and bits and see the outputs change, the diversity map cleared when they change, the
level view, the decoupling lab (swap, paint, decode), a bad file after an example (outputs cleared, one message),
save a screenshot: to ``$BDFLOW_SCREENSHOT`` when set (then with the real checkpoints of ``checkpoints/`` and a face from
``assets/``, for the README: ``BDFLOW_SCREENSHOT=docs/screenshot.png python -m pytest -q tests/test_browser.py``),
else to a temporary folder with tiny untrained models (fast). Screenshots of the first open, an upload, the level
view and the lab are saved too: to ``$BDFLOW_SHOTS`` when set (a folder), else to a temporary one.
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
from tests.helpers import REPO, free_port, tiny_checkpoints

sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = os.environ.get("BDFLOW_CHROMIUM", "/usr/bin/chromium")
SCREENSHOT = os.environ.get("BDFLOW_SCREENSHOT")
SHOTS = os.environ.get("BDFLOW_SHOTS")
TIMEOUT_MS = 180_000 if SCREENSHOT else 120_000  # generous: the CI machine may be busy

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not Path(CHROMIUM).is_file(),
                                 reason=f"no Chromium at {CHROMIUM} (apt-get install -y chromium, or set BDFLOW_CHROMIUM)")]


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


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    """The folder the screenshots of the page's stages go to."""
    folder = Path(SHOTS) if SHOTS else tmp_path_factory.mktemp("shots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def snap(page, folder: Path, name: str, elem_id: str | None = None) -> Path:
    """A screenshot of the whole page, or of one element (scrolled into view), as ``folder/name.png``."""
    path = folder / f"{name}.png"
    if elem_id:
        page.locator(f"#{elem_id}").scroll_into_view_if_needed()
        page.locator(f"#{elem_id}").screenshot(path=str(path))
    else:  # scroll through the page first: images below the fold load lazily
        height = page.evaluate("document.body.scrollHeight")
        for y in range(0, height, 800):
            page.evaluate(f"window.scrollTo(0, {y})")
            page.wait_for_timeout(100)
        page.evaluate("window.scrollTo(0, 0)")
        page.wait_for_function("[...document.images].every(i => i.complete)")
        page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 5_000
    return path


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


def opened(page) -> None:
    """Wait until the first open has filled the page (its last step is the lab's swap)."""
    page.wait_for_selector("#lab-rec img", state="attached")
    idle(page)


def uploaded(page, image: Path) -> None:
    """Upload ``image`` as the HR input (after the first open) and wait until its own panels are on the page."""
    opened(page)
    w, h = Image.open(image).size
    replaced(page, lambda: page.locator("#hr-input input[type=file]").set_input_files(str(image)))
    page.wait_for_function(f"document.querySelector('#notes')?.innerText.includes('HR {w}×{h}')")


def replaced(page, action) -> None:
    """Run ``action`` (a new input) and wait until the reconstruction and the level view (the last panel of a new
    input) show the new one."""
    js = "([id, src]) => { const i = document.querySelector(`#${id} img`); return i && i.src !== src; }"
    before = {panel: page.locator(f"#{panel} img").first.get_attribute("src") for panel in ("recon", "levels")}
    action()
    for panel, src in before.items():
        page.wait_for_function(js, arg=[panel, src])
    page.wait_for_function("document.querySelector('#numbers')?.innerText.includes('bicubic round trip')")
    idle(page)


def idle(page) -> None:
    """Wait until no event runs or waits (no progress text on the page)."""
    page.wait_for_function("!/processing \\||queue: /.test(document.body.innerText)")


def test_first_open_shows_an_example_in_every_panel(served, browser, shots):
    url, _, _ = served
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url)
    page.wait_for_function("document.querySelector('#numbers')?.innerText.includes('bicubic round trip')")
    opened(page)
    for panel in ("hr-input", "recon", "bicubic", "lr-true", "lr-big", "bam", "b", "zhist", "diversity", "levels",
                  "image-b", "lab-rec", "lab-b", "lab-change"):
        assert page.locator(f"#{panel} img").count() >= 1, panel
    assert "How to use it" in page.locator("#guide").inner_text()
    # the guide sits above the panels, and each explanation beside its panel, not at the bottom of the page
    top = page.evaluate("id => document.querySelector(`#${id}`).getBoundingClientRect().top + window.scrollY", "guide")
    assert top < page.evaluate("document.querySelector('#recon').getBoundingClientRect().top + window.scrollY")
    for panel, text in (("zhist", "explain-z"), ("b", "explain-b"), ("levels", "explain-levels")):
        gap = page.evaluate("""([a, b]) => Math.abs(document.querySelector(`#${a}`).getBoundingClientRect().top -
                                                  document.querySelector(`#${b}`).getBoundingClientRect().top)""",
                            [panel, text])
        assert gap < 400, (panel, gap)
    assert page.locator("#status").inner_text().strip() == ""
    snap(page, shots, "first-open")

    # the figure for slides: exported, previewed on the page, both files offered
    page.locator("#figures").get_by_role("button", name="figures for slides").click()
    page.locator("#fig-btn").click()
    page.wait_for_selector("#fig-preview img", state="attached")
    idle(page)
    assert page.locator("#fig-files a").count() >= 2 and page.locator("#status-figure").inner_text().strip() == ""
    snap(page, shots, "figure", "fig-preview")


def test_upload_move_sliders_error_toast_screenshot(served, browser, tmp_path, shots):
    url, image, (lr_h, lr_w) = served
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url)
    page.wait_for_function("document.querySelector('#numbers')?.innerText.includes('bicubic round trip')")
    uploaded(page, image)
    snap(page, shots, "upload")
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
    assert "τ = 0.20, τ_b = 0.00" in page.locator("#div-note").inner_text()
    assert page.locator("#levels img").count() == 1 and "3 (Y" in page.locator("#levels-table").inner_text()
    label_clear_of_titles(page, "zhist")

    shot = Path(SCREENSHOT) if SCREENSHOT else tmp_path / "screenshot.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000

    set_number(page, "tau", 0.4)  # a map of other settings does not stay on screen
    page.wait_for_function("!document.querySelector('#diversity img')")
    assert "press the button" in page.locator("#div-note").inner_text()

    before = recon_src(page)
    set_number(page, "tau-b", 1)  # the paper's sampling: Z at tau in B's cells too, a new sample and a new map
    page.wait_for_function("src => { const i = document.querySelector('#recon img'); return i && i.src !== src; }",
                           arg=before)
    page.locator("#div-btn").click()
    page.wait_for_selector("#diversity img")
    assert "τ = 0.40, τ_b = 1.00" in page.locator("#div-note").inner_text()


def label_clear_of_titles(page, elem_id: str) -> None:
    """The panel's label covers only the figure's empty top band (viz.LABEL_BAND), not a plot title."""
    from bdflow.viz import LABEL_BAND

    covered = page.evaluate("""id => {
        const img = document.querySelector(`#${id} img`);
        const label = document.querySelector(`#${id} [data-testid=block-label]`);
        const r = img.getBoundingClientRect(), l = label.getBoundingClientRect();
        const f = Math.min(r.width / img.naturalWidth, r.height / img.naturalHeight);  // object-fit: contain
        const top = r.top + (r.height - img.naturalHeight * f) / 2;
        return (l.bottom - top) / f;  // image pixels under the label, from the top
    }""", elem_id)
    assert covered < LABEL_BAND, covered


def test_lab_swap_paint_decode_and_level_view(served, browser, tmp_path, shots):
    url, image, _ = served
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url)
    page.wait_for_function("document.querySelector('#numbers')?.innerText.includes('bicubic round trip')")
    uploaded(page, image)
    page.wait_for_function("document.querySelector('#levels-table')?.innerText.includes('3 (Y')")
    page.wait_for_selector("#levels img")
    rows = page.locator("#levels-table tbody tr").count()
    assert rows >= 3 and "reads it as a condition" in page.locator("#levels-table").inner_text()
    snap(page, shots, "levels", "level-view")

    # swap: image A's Y with image B's B
    page.locator("#image-b input[type=file]").set_input_files(str(REPO / "assets" / "church.jpg"))
    page.locator("#swap-btn").click()
    page.wait_for_function("document.querySelector('#lab-numbers')?.innerText.includes('B cells differ')")
    idle(page)
    assert page.locator("#lab-rec img").count() == 1 and page.locator("#lab-change img").count() == 1
    assert page.locator("#status").inner_text().strip() == "" and page.locator("#status-lab").inner_text().strip() == ""
    for panel in ("lab-rec", "lab-b", "lab-change"):  # each label fits its panel: not cut off
        assert page.evaluate("""id => { const l = document.querySelector(`#${id} [data-testid=block-label]`);
                                        return l.scrollWidth <= l.clientWidth + 1; }""", panel), panel
    snap(page, shots, "lab", "lab")
    page.locator("#threshold input[data-testid=number-input]").fill("60")  # T changed: the lab's results go
    page.locator("#threshold input[data-testid=number-input]").press("Enter")
    page.wait_for_function("!document.querySelector('#lab-rec img')")

    # B := 0 on the canvas, decoded as it is, then with a white stroke painted on it
    page.locator("#b-source label", has_text="B := 0").click()
    page.locator("#canvas-btn").click()
    page.wait_for_function("!document.querySelector('#canvas .empty')")
    page.wait_for_timeout(1000)  # the editor draws its background
    page.locator("#paint-btn").click()
    page.wait_for_function("document.querySelector('#lab-numbers')?.innerText.includes('B cells differ')")
    zero_notes = lab_notes(page)
    zero_src = page.locator("#lab-rec img").get_attribute("src")
    page.locator("#canvas button[aria-label=Brush]").click()
    box = page.locator("#canvas .pixi-target canvas").bounding_box()
    x0, y0 = box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.4
    page.mouse.move(x0, y0)
    page.mouse.down()
    for i in range(1, 21):
        page.mouse.move(x0 + i * box["width"] * 0.02, y0 + i * box["height"] * 0.01)
    page.mouse.up()
    page.wait_for_timeout(500)
    page.locator("#paint-btn").click()
    page.wait_for_function("src => document.querySelector('#lab-rec img')?.src !== src", arg=zero_src)
    page.wait_for_function("document.querySelector('#lab-numbers')?.innerText.includes('B cells differ')")
    painted_notes = lab_notes(page)
    assert painted_notes != zero_notes  # the painted cells reached the decoder
    assert int(painted_notes.split(" of ")[0]) != int(zero_notes.split(" of ")[0])


def lab_notes(page) -> str:
    """'N of M B cells differ ...' of the lab's numbers."""
    text = page.locator("#lab-numbers").inner_text()
    return next(line for line in text.splitlines() if "B cells differ" in line).strip()


def test_bad_upload_after_an_example_clears_the_panels(served, browser, tmp_path):
    """Pick the cat example, then upload a text file named holiday.png."""
    url, _, _ = served
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url)
    opened(page)
    if "cat-125" not in (page.locator("#hr-input img").first.get_attribute("src") or ""):  # not the first example
        replaced(page, lambda: page.locator("img[src$='cat-125.jpg']").first.click())
    page.locator("#div-btn").click()
    page.wait_for_selector("#diversity img")
    bad = tmp_path / "holiday.png"
    bad.write_text("this is not an image")
    page.locator("#hr-input input[type=file]").set_input_files(str(bad))
    message = "holiday.png is not an image Pillow can read"
    page.wait_for_function(f"document.querySelector('#status')?.innerText.includes('{message}')")
    # the chain encode -> decode -> scores -> levels clears its panels one after the other (a loaded machine shows a
    # step's timer, "0.2s", in a panel meanwhile): wait for all of them, then check that nothing refills them
    page.wait_for_function("!document.querySelector('#recon img') && !document.querySelector('#levels img')"
                           " && !document.querySelector('#numbers')?.innerText.trim()"
                           " && !document.querySelector('#notes')?.innerText.trim()")
    page.wait_for_timeout(1500)  # a second change event would come now
    for panel in ("recon", "bicubic", "lr-true", "lr-big", "bam", "b", "zhist", "diversity", "levels"):
        assert page.locator(f"#{panel} img").count() == 0, panel
    assert page.locator("#numbers").inner_text().strip() == "" and page.locator("#notes").inner_text().strip() == ""
    body = page.locator("body").inner_text()
    assert body.count(message) == 1  # once, in the status line: no toast, no "Error (2)"
    assert page.get_by_text("Error", exact=True).count() == 0  # no error badge over the panels
    assert "Traceback" not in page.content()
