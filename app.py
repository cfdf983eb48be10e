"""BDFlow in the browser: see the decoupling of an image into Y (LR), B (boundaries) and Z (Gaussian).

    pip install -r requirements.txt && python app.py          # http://127.0.0.1:7860

Layout and wiring only: the work is in ``bdflow.demo`` (cache, decoding, toggles, numbers) and ``bdflow.viz``
(figures). Settings (environment variables):
    BDFLOW_MODELS        comma-separated checkpoint folders or Hugging Face Hub repo ids (default: checkpoints/*)
    BDFLOW_MAX_SIDE      longer side above which inputs are downscaled, with a notice (default 1024)
    BDFLOW_MAX_PIXELS    inputs above this many pixels are refused (default 4096 x 4096)
    BDFLOW_MAX_FILE_SIZE upload limit (default "25mb")
    BDFLOW_PRECISION     fp32 (exact) or bf16 (subnets in bfloat16, ~2x faster; default where the CPU has it)
    BDFLOW_CONCURRENCY   model calls run at once (default 1: one call uses every core)
    BDFLOW_QUEUE_SIZE    requests waiting at most (default 64)
Endpoints (``gradio_client``): /encode, /decode, /scores, /diversity, /levels, /swap, /figure.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import os
import random
import threading
from pathlib import Path

# Offline unless told otherwise: no analytics, no telemetry, and no Hub access when only local checkpoints are used.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
if not os.environ.get("BDFLOW_MODELS"):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

import gradio as gr  # noqa: E402

import numpy as np  # noqa: E402

from bdflow import lab, viz  # noqa: E402
from bdflow.accel import default_precision, keep_freed_memory  # noqa: E402
from bdflow.demo import (DEFAULT_MAX_SIDE, FIGURE_PANELS, Demo, Toggles, figure_caption,  # noqa: E402
                         levels_markdown, scores_markdown)
from bdflow.limits import PRECISIONS  # noqa: E402
from bdflow.image_io import to_output  # noqa: E402
from bdflow.pipeline import DEFAULT_MAX_PIXELS, DEFAULT_TAU, DEFAULT_TAU_B  # noqa: E402

ROOT = Path(__file__).resolve().parent
LAB_HEIGHT = 320  # px: the lab's panels (the swapped B must stay readable)
ASSETS = ROOT / "assets"
EXAMPLE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
log = logging.getLogger("bdflow.app")

INTRO = """# BDFlow: boundary-aware decoupled flow rescaling
An invertible flow turns the HR image X into **Y** (an 8-bit image, 1/s per side), **B** (a k-bit boundary map
on Y's grid) and **Z** (pushed towards a Gaussian). Only Y and B are stored; the decoder samples Z ~ N(0, τ²), at a
share of τ in B's boundary cells (0 by default: there B says where the edge is)."""

GUIDE = """**How to use it.** An example face is loaded and every panel shows it. Upload your own image (or pick
another example), choose the scale, then move **τ**, **bits** or the **seed**: only the decoder runs again. Each
panel says what it shows beside it. Further down: the flow level by level, the **decoupling lab** (decode this Y
with another B) and **figures for slides**. The checkpoints are early CPU-trained models, trained on faces."""

# what each panel shows, placed beside it
EXPLAIN = {
    "reconstruction": """**Reconstruction | HR**: drag the slider to compare the decoded image with the input.
Beside it, the **bicubic round trip** (bicubic down to the same LR size, bicubic up) is the baseline every number is
compared with.""",
    "numbers": """**Numbers**: PSNR-Y / SSIM-Y (border = scale) and LPIPS against the HR, bytes of Y + B and bits per
HR pixel. *JPEG the LR* shows the rate/quality trade when Y itself is compressed.""",
    "lr": """**LR Y**: what is stored, at true size and enlarged (nearest). It is not a bicubic thumbnail: the flow
hides high-frequency information in it (tick *feed a bicubic LR* to see what that is worth).""",
    "b": """**BAM / stored B**: the Boundary-aware Mask of the HR image (Canny-like, Algorithm 1) and the k-bit B the
flow stores on the LR grid, 1/24 of Y's bits at k = 1. *Drop B* shows what the boundaries carry.""",
    "z": """**Z histogram** (the paper's Fig. 2): the forward Z of this image with its Gaussian fit, against the
N(0, 1) prior the decoder samples from; and Z_GT = HR − bicubic round trip, the high frequencies a plain LR loses,
which is *not* Gaussian (heavy tails at boundaries). That is why B is split off.""",
    "diversity": """**Diversity map**: per-pixel standard deviation over several Z samples: where the sampled Z, not
Y or B, decides the pixels. τ = 0 gives the deterministic mean and a black map. Move *τ in B's boundary cells* to 1
(the paper's sampling) to see the edges move: B has one value per LR cell, so where an edge runs inside its cell is
in Z. Each map is coloured on its own scale: compare the means in the caption.""",
    "levels": """Each level's wavelet gives a low-pass (3 channels) and detail channels; its InvBlocks then mix
them. Compare the two halves of a row: the |Δ low-pass| map is the detail the blocks wrote into the low-pass that
becomes Y. The last tile is B: the B each level's couplings read (B as a condition), the B channel, or a note
that the model has none.""",
    "figure": """The current panels (or the chosen one) with a caption of the settings and numbers, as PNG and
PDF; the PNG is previewed here.""",
}


LAB = """Y is always image A's own (the flow's LR of the HR input above), Z is sampled at the τ, τ_b and seed above
(τ_b in the cells the new B marks);
only **B** changes. Take it from **image B** (encoded by the same model at A's size), set **B := 0**, use the HR's
own **BAM at another threshold T**, or keep **the flow's own** B. *Swap* decodes it at once; or put it on the
canvas, paint boundaries (white) or paint them out (black) with the brush (the eraser takes strokes back), and
decode the painted B: edges appear where B says, whatever the image. The change map shows where this B moved the
pixels against the flow's own B (same Y, τ and seed)."""


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        raise SystemExit(f"{name} must be an integer, got {os.environ[name]!r}") from None


def error_message(name: str, err: Exception) -> str:
    """The message a user sees for a failure: bad input says why; a bug says only its type (its traceback goes to
    the server log)."""
    if isinstance(err, gr.Error):
        return str(err.message)
    if isinstance(err, (ValueError, FileNotFoundError)):
        return str(err)
    if isinstance(err, MemoryError):
        return "out of memory: try a smaller image"
    log.error("unexpected error in %s", name, exc_info=err)
    return f"unexpected server error ({type(err).__name__}); please try another image"


def env_precision() -> str:
    precision = os.environ.get("BDFLOW_PRECISION", default_precision())
    if precision not in PRECISIONS or (precision == "bf16" and default_precision() != "bf16"):
        raise SystemExit(f"BDFLOW_PRECISION must be one of {PRECISIONS} (bf16 needs a CPU with AVX512), got {precision!r}")
    return precision


def user_errors(fn):
    """API endpoints: every failure reaches the client as a gr.Error with a clear message, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as err:
            raise gr.Error(error_message(fn.__name__, err), print_exception=False) from None

    return wrapper


class InputError(gr.Error):
    """A failure to read the HR input (or to find the model): shown under the input, not in a panel."""


def shown_errors(fn, n_outputs: int):
    """The UI's copy of an endpoint, with two more outputs: the status line under the input and the panel's own
    status line. A failure clears every output (no stale result of an earlier image stays on screen) and puts the
    message, once, where it belongs: under the input for an ``InputError``, in the panel's line for any other. No
    toast (a change event may fire twice for one upload) and no error badge over the panels. Without an image
    the outputs are cleared silently."""
    empty = [None] * n_outputs

    @functools.wraps(fn)
    def wrapper(*args):
        if _given(args[0]) is None:
            return [*empty, "", ""]
        try:
            out = fn(*args)
        except InputError as err:
            return [*empty, f"**⚠ {err.message}**", ""]
        except Exception as err:
            return [*empty, "", f"**⚠ {error_message(fn.__name__, err)}**"]
        return [*(out if isinstance(out, tuple) else (out,)), "", ""]

    return wrapper


class PngFiles:
    """uint8 arrays -> PNG files in Gradio's cache, written at zlib level 1 (4x faster than Gradio's default for a
    512x512 image, still lossless); the HR and bicubic panels, which do not change while sliders move, once per input."""

    def __init__(self, folder: Path | None = None):
        from gradio.utils import get_upload_folder

        self.folder = Path(folder or get_upload_folder()) / "bdflow"
        self._keyed: dict = {}

    def __call__(self, arr, key=None) -> str:
        if key is not None and key in self._keyed and Path(self._keyed[key]).is_file():
            return self._keyed[key]
        import io

        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="png", compress_level=1)
        data = buf.getvalue()
        path = self.folder / f"{hashlib.sha1(data).hexdigest()}.png"
        if not path.is_file():
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.write_bytes(data)
            tmp.replace(path)
        if key is not None:
            if len(self._keyed) > 256:
                self._keyed.clear()
            self._keyed[key] = str(path)
        return str(path)


FILE_ONLY = ("only an image uploaded to this app (or one of its examples) is read: send the file itself "
             "(gradio_client: handle_file(path)), not a path on the server or a string")


def _given(payload) -> str | None:
    """The path a file input's raw payload names, unchecked (events run with preprocess=False, so that even a file
    Pillow cannot open reaches bdflow's loader and its clear message); None for no file."""
    if isinstance(payload, dict):
        payload = payload.get("path")
    return None if payload is None else str(payload)


class Uploads:
    """The one check every file an endpoint reads goes through. With preprocess=False, Gradio checks only payloads
    that carry its FileData tag, so a client could name any server file: a path is read only if, symlinks and
    '..' resolved, it lies in Gradio's upload folder (uploads, clipboard pastes, examples shown by the page), its
    examples cache, or is one of the app's example files. Anything else gets ``FILE_ONLY``, the same message
    whether the path exists, is a folder or is missing."""

    def __init__(self, examples):
        self.examples = {Path(p).resolve() for p in examples}

    @staticmethod
    def folders() -> list[Path]:
        from gradio.utils import get_cache_folder, get_upload_folder

        return [Path(get_upload_folder()).resolve(), get_cache_folder().resolve()]

    def __call__(self, payload) -> str | None:
        """The checked path of ``payload`` (a FileData dict or a string), None for no file."""
        path = _given(payload)
        if path is None:
            return None
        try:
            real = Path(path).resolve()
        except (OSError, RuntimeError, ValueError):  # a NUL byte, a symlink loop
            real = None
        if real is not None and (real in self.examples or any(real.is_relative_to(f) for f in self.folders())):
            return str(real)
        raise gr.Error(FILE_ONLY, print_exception=False)


def accept_plain_strings(component):
    """``component`` (an image input) with a payload model that takes a plain string as a path: it then reaches
    ``Uploads`` and its message, instead of failing Gradio's validation with a generic error and a traceback."""
    import pydantic

    base = component.data_model

    class Payload(base):
        @pydantic.model_validator(mode="before")
        @classmethod
        def _string_is_a_path(cls, value):
            return value if isinstance(value, dict) else {"path": str(value)}

    Payload.__name__ = Payload.__qualname__ = base.__name__  # the API's schema stays Gradio's
    component.data_model = Payload
    return component


def build(demo: Demo, examples_dir: Path = ASSETS) -> gr.Blocks:
    """The Blocks app for a ``Demo`` (queue settings are applied by ``configure``)."""
    labels = demo.labels
    png = PngFiles()
    examples = sorted(p for p in examples_dir.glob("*") if p.suffix.lower() in EXAMPLE_SUFFIXES)
    uploaded = Uploads(examples)

    def u8(x):  # (1,3,H,W) in [0, 1] -> uint8 (H,W,3)
        return to_output(x, "ndarray", "uint8")

    def toggles(bicubic_lr, jpeg_on, jpeg_q, drop_b, tau_b) -> Toggles:
        return Toggles(bicubic_lr=bool(bicubic_lr), jpeg_quality=jpeg_q if jpeg_on else None, drop_b=bool(drop_b),
                       tau_b=tau_b)

    def analysis(image, model):
        """The cached forward pass of the HR input; any failure is an ``InputError``."""
        try:
            path = uploaded(image)
            if path is None:
                raise ValueError("upload an image first (or pick an example)")
            return demo.analyse(path, model)
        except Exception as err:
            raise InputError(error_message("analysis", err), print_exception=False) from None

    def encode(image, model):
        """Forward pass (cached per image and model): HR boundary map, Z histogram, notes."""
        an = analysis(image, model)
        for note in an.notes:
            if note.startswith("downscaled"):
                gr.Warning(note)
        h, w = an.x.shape[-2:]
        lr_h, lr_w = an.y.shape[-2:]
        z_channels = demo.rescaler(model).model.config.z_channels
        lines = [f"**{model}** · HR {w}×{h} · LR {lr_w}×{lr_h} · Z has {z_channels} channels",
                 f"- the histogram pools Z's channels; their own means hold {100 * an.z_channels['channel_mean_share']:.0f} % "
                 f"of E[z²] (each channel N(0, 1): {100 / (lr_w * lr_h):.1g} %), and within a channel the excess kurtosis "
                 f"is {an.z_channels['channel_kurtosis']:.1f} (N(0, 1): 0)", *[f"- {n}" for n in an.notes]]
        return png(viz.framed(viz.edges_image(an.edges))), png(viz.z_histogram(an.z, an.z_gt)), "\n".join(lines)

    def decode(image, model, bits=1, tau=DEFAULT_TAU, seed=0, bicubic_lr=False, jpeg_on=False, jpeg_q=75, drop_b=False,
               tau_b=DEFAULT_TAU_B):
        """Inverse pass only: LR given to the decoder, stored B, reconstruction vs HR, bicubic, bytes."""
        an = analysis(image, model)
        dec = demo.decode(an, bits, tau, seed, toggles(bicubic_lr, jpeg_on, jpeg_q, drop_b, tau_b))
        h, w = an.x.shape[-2:]
        hr, rec = png(u8(an.x), (an.key, "hr")), png(u8(dec.x_hat))
        b_panel = png(viz.framed(viz.codes_image(dec.enc.b, dec.enc.bits, an.scale, (h, w))))
        table = scores_markdown(None, dec) + "".join(f"\n\n_{n}_" for n in dec.notes)
        return (png(dec.enc.y), png(viz.enlarge_nearest(dec.enc.y, an.scale)[:h, :w]), b_panel, (rec, hr),
                png(u8(an.bicubic), (an.key, "bicubic")), table)

    def scores(image, model, bits=1, tau=DEFAULT_TAU, seed=0, bicubic_lr=False, jpeg_on=False, jpeg_q=75, drop_b=False,
               tau_b=DEFAULT_TAU_B):
        """PSNR/SSIM/LPIPS of the reconstruction and of bicubic, bytes of Y + B, bits per HR pixel."""
        an = analysis(image, model)
        dec = demo.decode(an, bits, tau, seed, toggles(bicubic_lr, jpeg_on, jpeg_q, drop_b, tau_b))
        s = demo.scores(an, dec)
        return scores_markdown(s) + "".join(f"\n\n_{n}_" for n in dec.notes), json_safe(s)

    def diversity(image, model, bits=1, tau=DEFAULT_TAU, seed=0, bicubic_lr=False, jpeg_on=False, jpeg_q=75,
                  drop_b=False, samples=4, tau_b=DEFAULT_TAU_B):
        """Per-pixel std over ``samples`` Z samples (seeds seed ... seed + samples - 1)."""
        an = analysis(image, model)
        tg = toggles(bicubic_lr, jpeg_on, jpeg_q, drop_b, tau_b)
        std = demo.diversity(an, bits, tau, seed, tg, samples)
        img, vmax = viz.heat_image(std)
        return png(img), (f"std over {int(samples)} samples at τ = {float(tau):.2f}, τ_b = {tg.tau_b:.2f} (share of τ in "
                          f"B's boundary cells), seed {int(seed)}: black 0, bright ≥ {vmax:.2f} (0–255 scale, this "
                          f"map's own); mean {float(std.mean()):.2f}")

    def levels(image, model):
        """The flow level by level (from the cached forward pass): each level's wavelet low-pass and detail
        channels, and the same slots after that level's InvBlocks; a table of their RMS."""
        an = analysis(image, model)
        return png(viz.levels_image(an.levels)), levels_markdown(an.levels)

    def swap(image_a, image_b, model, bits=1, tau=DEFAULT_TAU, seed=0, tau_b=DEFAULT_TAU_B):
        """Decoupling lab: image A's Y with image B's B (image B encoded at A's size): reconstruction vs A, scores."""
        rec, _, _, table, s = lab_decode(image_a, model, bits, tau, seed, "image", image_b, tau_b=tau_b)
        return rec, table, s

    def lab_b(image_a, model, bits, source, image_b=None, threshold=50.0):
        an = analysis(image_a, model)
        other = None
        if source == "image":
            path_b = uploaded(image_b)
            if path_b is None:
                raise gr.Error("upload an image B to take its B (or choose another source of B)", print_exception=False)
            other = demo.analyse(lab.at_size_of(path_b, an, demo.rescaler(model).max_pixels), model)
        return an, lab.source_codes(demo, an, int(bits), source, other, threshold)

    def lab_show(an, dec, bits, tau, seed, tau_b):
        """Reconstruction, the B decoded, what it changed against the flow's own B (same Y, tau, tau_b, seed), numbers."""
        h, w = an.x.shape[-2:]
        s = demo.scores(an, dec)
        table = scores_markdown(s) + "".join(f"\n\n_{n}_" for n in dec.notes)
        b_img = png(viz.framed(viz.codes_image(dec.enc.b, int(bits), an.scale, (h, w))))
        own = demo.decode(an, int(bits), tau, seed, Toggles(tau_b=tau_b)).x_hat
        change, vmax = viz.heat_image(((dec.x_hat - own).abs().mean(dim=1)[0] * 255).numpy())
        table += f"\n\n_change map: black 0, bright ≥ {vmax:.1f} (0–255 scale)_"
        return png(u8(dec.x_hat)), b_img, png(change), table, json_safe(s)

    def lab_decode(image_a, model, bits, tau, seed, source, image_b=None, threshold=50.0, tau_b=DEFAULT_TAU_B):
        an, codes = lab_b(image_a, model, bits, source, image_b, threshold)
        return lab_show(an, lab.decode_with(demo, an, codes, int(bits), tau, seed, tau_b), bits, tau, seed, tau_b)

    def lab_canvas(image_a, model, bits, source, image_b, threshold):
        """The chosen B, enlarged onto the HR grid, as the brush's canvas."""
        an, codes = lab_b(image_a, model, bits, source, image_b, threshold)
        img = lab.codes_canvas(codes, int(bits), an.scale, tuple(an.x.shape[-2:]))
        return {"background": img, "layers": [], "composite": img}

    def lab_paint(image_a, model, bits, tau, seed, canvas, tau_b=DEFAULT_TAU_B):
        """Decode image A's Y with the B painted on the canvas (white = boundary, black = none)."""
        an = analysis(image_a, model)
        composite = uploaded((canvas or {}).get("composite"))
        if composite is None:
            raise gr.Error("put a B on the canvas first (the button above it)", print_exception=False)
        from PIL import Image

        painted = np.asarray(Image.open(composite).convert("RGBA"))
        codes = lab.paint_codes(painted, tuple(an.y.shape[-2:]), int(bits))
        return lab_show(an, lab.decode_with(demo, an, codes, int(bits), tau, seed, tau_b), bits, tau, seed, tau_b)

    def figure(image, model, bits=1, tau=DEFAULT_TAU, seed=0, bicubic_lr=False, jpeg_on=False, jpeg_q=75, drop_b=False,
               panel="all panels", tau_b=DEFAULT_TAU_B):
        """The current panels (or the chosen one) as a captioned PNG and PDF for slides: [png, pdf]."""
        an = analysis(image, model)
        tg = toggles(bicubic_lr, jpeg_on, jpeg_q, drop_b, tau_b)
        dec = demo.decode(an, int(bits), tau, seed, tg)
        panels = demo.figure_panels(an, dec, int(bits), FIGURE_PANELS if panel == "all panels" else (panel,))
        caption = figure_caption(an, demo.scores(an, dec), int(bits), float(tau), int(seed), tg)
        folder = hashlib.sha1(repr((an.key, int(bits), float(tau), int(seed), tg.key(), panel)).encode()).hexdigest()
        name = "-".join("".join(c if c.isalnum() else " " for c in f"bdflow {model} {panel}").split())
        return [str(p) for p in viz.export_figure(panels, caption, png.folder / "figures" / folder[:16] / name)]

    def figure_shown(*args):
        """The UI's export: the PNG as a preview, and both files."""
        files = figure(*args)
        return files[0], files

    def explain(key: str):
        return gr.Markdown(EXPLAIN[key], elem_classes="explain", elem_id=f"explain-{key}")

    # on first open: a face (what the checkpoints know) as the input, the next example as the lab's image B
    first = next((p for p in examples if p.stem.startswith("face")), examples[0] if examples else None)
    after = examples[examples.index(first) + 1 :] + examples if first else []  # the next one, wrapping around
    second = next((p for p in after if p != first), None)
    # delete_cache: files of the app older than an hour are removed every hour (a long-running Space stays small)
    with gr.Blocks(title="BDFlow: see the decoupling", delete_cache=(3600, 3600)) as app:
        gr.Markdown(INTRO)
        gr.Markdown(GUIDE, elem_id="guide")
        with gr.Row():
            with gr.Column(scale=1, min_width=320):
                # an example is shown on first open (the page's load event analyses it), so no panel starts empty
                image = accept_plain_strings(gr.Image(value=str(first) if first else None, label="HR input",
                                                      type="filepath", sources=["upload", "clipboard"], height=300,
                                                      elem_id="hr-input"))
                status = gr.Markdown(elem_id="status")  # errors of the input (InputError); panels have their own
                if examples:
                    gr.Examples([[str(p)] for p in examples], inputs=[image], label="examples (assets/)",
                                cache_examples=False, examples_per_page=8)
                model = gr.Dropdown(labels, value=labels[0], label="scale (checkpoints found)", elem_id="model")
                bits = gr.Slider(1, 4, value=1, step=1, label="bits of B (k)", elem_id="bits")
                tau = gr.Slider(0, 1.5, value=demo.rescaler(labels[0]).default_tau, step=0.05, label="Z temperature τ",
                                elem_id="tau", info="starts at the model's own default τ (written by its training)")
                tau_b = gr.Slider(0, 1, value=DEFAULT_TAU_B, step=0.05, label="τ in B's boundary cells (share of τ)",
                                  elem_id="tau-b", info="0: Z at its mean where B marks a boundary, texture sampled "
                                  "elsewhere; 1: the paper's one τ everywhere")
                with gr.Row():
                    seed = gr.Number(0, precision=0, minimum=0, label="seed", elem_id="seed")
                    again = gr.Button("sample again", elem_id="again")
                with gr.Accordion("teaching toggles", open=True):
                    bicubic_lr = gr.Checkbox(False, label="feed a bicubic LR instead of the flow's LR", elem_id="bicubic-lr")
                    with gr.Row():
                        jpeg_on = gr.Checkbox(False, label="JPEG the LR", elem_id="jpeg-on")
                        jpeg_q = gr.Slider(5, 95, value=75, step=5, label="JPEG quality", elem_id="jpeg-q")
                    drop_b = gr.Checkbox(False, label="drop B", elem_id="drop-b")
                notes = gr.Markdown(label="notes", elem_id="notes")
            with gr.Column(scale=2):
                results_status = gr.Markdown(elem_id="status-results")
                with gr.Row():
                    slider = gr.ImageSlider(label="reconstruction | HR", type="numpy", format="png", elem_id="recon")
                    bicubic = gr.Image(label="bicubic round trip", format="png", elem_id="bicubic")
                explain("reconstruction")
                table = gr.Markdown(label="table", elem_id="numbers")
                explain("numbers")
                with gr.Accordion("numbers as JSON", open=False):
                    numbers = gr.JSON(label="numbers")
                with gr.Row():
                    lr_true = gr.Image(label="LR Y (true size)", format="png", height=160, elem_id="lr-true")
                    lr_big = gr.Image(label="LR Y enlarged (nearest)", format="png", elem_id="lr-big")
                    explain("lr")
                with gr.Row():
                    edges = gr.Image(label="BAM of the HR image (k = 1)", format="png", elem_id="bam")
                    b_panel = gr.Image(label="stored B (k bits, LR grid)", format="png", elem_id="b")
                    explain("b")
                with gr.Row():
                    with gr.Column(scale=2):
                        zhist = gr.Image(label="Z vs its Gaussian (paper Fig. 2)", format="png", elem_id="zhist")
                    explain("z")
                with gr.Row():
                    div_map = gr.Image(label="diversity map (std over Z samples)", format="png", elem_id="diversity")
                    with gr.Column():
                        samples = gr.Slider(2, 8, value=4, step=1, label="samples")
                        div_btn = gr.Button("compute the diversity map", elem_id="div-btn")
                        div_status = gr.Markdown(elem_id="status-diversity")
                        div_note = gr.Markdown(label="caption", elem_id="div-note")
                        explain("diversity")
        with gr.Accordion("the flow, level by level", open=True, elem_id="level-view"):
            explain("levels")
            level_status = gr.Markdown(elem_id="status-levels")
            level_img = gr.Image(label="each level: the wavelet's output, then after its InvBlocks", format="png",
                                 elem_id="levels")
            level_table = gr.Markdown(elem_id="levels-table")
        with gr.Accordion("decoupling lab: decode this Y with another B", open=True, elem_id="lab"):
            with gr.Row():
                with gr.Column(scale=1, min_width=300):
                    image_b = accept_plain_strings(gr.Image(value=str(second) if second else None,
                                                            label="image B (its B is taken)", type="filepath",
                                                            sources=["upload", "clipboard"], height=200,
                                                            elem_id="image-b"))
                    b_source = gr.Radio([(text, key) for key, text in lab.B_SOURCES.items()], value="image",
                                        label="B from", elem_id="b-source")
                    threshold = gr.Slider(0, 200, value=50, step=5, label="T of the BAM (OpenCV Canny units)",
                                          elem_id="threshold")
                    with gr.Row():
                        swap_btn = gr.Button("swap: decode with this B", variant="primary", elem_id="swap-btn")
                        canvas_btn = gr.Button("put this B on the canvas", elem_id="canvas-btn")
                    canvas = gr.ImageEditor(label="B to paint", type="numpy", sources=[], transforms=[],
                                            layers=False, image_mode="RGB", format="png",
                                            brush=gr.Brush(colors=["#ffffff", "#000000"], default_color="#ffffff",
                                                           color_mode="fixed"),
                                            interactive=True, elem_id="canvas")
                    paint_btn = gr.Button("decode the painted B", elem_id="paint-btn")
                with gr.Column(scale=2):
                    lab_status = gr.Markdown(elem_id="status-lab")
                    with gr.Row():  # two per row, tall enough that the B and what it did can be read
                        lab_rec = gr.Image(label="A's Y decoded with this B", format="png", height=LAB_HEIGHT,
                                           elem_id="lab-rec")
                        lab_bimg = gr.Image(label="the B decoded", format="png", height=LAB_HEIGHT, elem_id="lab-b")
                    with gr.Row():
                        lab_change = gr.Image(label="change vs the flow's own B", format="png", height=LAB_HEIGHT,
                                              elem_id="lab-change")
                        gr.Markdown(LAB, elem_classes="explain", elem_id="explain-lab")
                    lab_table = gr.Markdown(elem_id="lab-numbers")
                    lab_json = gr.JSON(visible=False)
        with gr.Accordion("figures for slides", open=False, elem_id="figures"):  # a preview once one is exported
            explain("figure")
            with gr.Row():
                fig_panel = gr.Dropdown(["all panels", *FIGURE_PANELS], value="all panels", label="panel",
                                        elem_id="fig-panel")
                fig_btn = gr.Button("export PNG + PDF", elem_id="fig-btn")
            fig_status = gr.Markdown(elem_id="status-figure")
            fig_preview = gr.Image(label="preview of the PNG", format="png", elem_id="fig-preview")
            fig_files = gr.File(label="figure", file_count="multiple", elem_id="fig-files")
        api_only = gr.Button(visible=False)  # the trigger of the public endpoints (they raise clear errors)

        # tau_b came last to every endpoint: it closes each input list, so earlier positional calls keep their meaning
        dec_in = [image, model, bits, tau, seed, bicubic_lr, jpeg_on, jpeg_q, drop_b, tau_b]
        div_in = [*dec_in[:-1], samples, tau_b]
        fig_in = [*dec_in[:-1], fig_panel, tau_b]
        lab_in = [image, model, bits, tau, seed, b_source, image_b, threshold, tau_b]  # lab_decode's
        dec_out = [lr_true, lr_big, b_panel, slider, bicubic, table]
        lab_out = [lab_rec, lab_bimg, lab_change, lab_table, lab_json]
        common = {"preprocess": False, "concurrency_id": "model", "show_progress": "minimal"}
        ui = {"api_visibility": "private", **common}

        # The public endpoints: raise gr.Error, which gradio_client turns into an AppError with the message.
        for fn, inputs, outputs, name in (
            (encode, [image, model], [edges, zhist, notes], "encode"), (decode, dec_in, dec_out, "decode"),
            (scores, dec_in, [table, numbers], "scores"),
            (diversity, div_in, [div_map, div_note], "diversity"),
            (levels, [image, model], [level_img, level_table], "levels"),
            (swap, [image, image_b, model, bits, tau, seed, tau_b], [lab_rec, lab_table, lab_json], "swap"),
            (figure, fig_in, [fig_files], "figure"),
        ):
            api_only.click(user_errors(fn), inputs, outputs, api_name=name, **common)

        # The UI: an error clears the outputs and goes under the input (InputError) or to the panel's status line.
        def on(trigger, fn, inputs, outputs, panel_status, **kw):
            return trigger(shown_errors(fn, len(outputs)), inputs, [*outputs, status, panel_status], **ui, **kw)

        def then(event, fn, inputs, outputs, panel_status):
            return event.then(shown_errors(fn, len(outputs)), inputs, [*outputs, status, panel_status], **ui)

        def stale():
            """Results that follow the settings only when asked for are cleared when the settings change."""
            return None, "_no map for the current settings yet: press the button_", None, None, "", ""

        controls = (bits, tau, tau_b, seed, bicubic_lr, jpeg_on, jpeg_q, drop_b)
        for control in controls:
            then(on(control.change, decode, dec_in, dec_out, results_status, trigger_mode="always_last"),
                 scores, dec_in, [table, numbers], results_status)
        # a new input, a new model, and the page's first open (its example): the forward pass and every panel of it
        for trigger in (image.change, model.change, app.load):
            encoded = on(trigger, encode, [image, model], [edges, zhist, notes], results_status,
                         trigger_mode="always_last")
            shown = then(then(then(encoded, decode, dec_in, dec_out, results_status), scores, dec_in,
                              [table, numbers], results_status), levels, [image, model], [level_img, level_table],
                         level_status)
        # the first open fills the panels that otherwise wait for a button: the diversity map and a swap
        first_map = then(shown, diversity, div_in, [div_map, div_note], div_status)
        first_swap = then(first_map, lab_decode, lab_in, lab_out, lab_status)
        again.click(lambda: random.randrange(2**31), None, seed, api_visibility="private", queue=False)
        # each model starts at its own default tau (Rescaler.default_tau: the checkpoint's, written by training)
        model.change(lambda m: demo.rescaler(m).default_tau, model, tau, api_visibility="private", queue=False)
        asked_map = on(div_btn.click, diversity, div_in, [div_map, div_note], div_status)
        asked_swap = on(swap_btn.click, lab_decode, lab_in, lab_out, lab_status)
        on(canvas_btn.click, lab_canvas, [image, model, bits, b_source, image_b, threshold], [canvas], lab_status)
        painted = on(paint_btn.click, lab_paint, [image, model, bits, tau, seed, canvas, tau_b], lab_out, lab_status)
        asked_figure = on(fig_btn.click, figure_shown, fig_in, [fig_preview, fig_files], fig_status)
        # ... and are cleared when the settings change, a computation still running for the old ones cancelled
        # (a diversity map at tau > 0 takes seconds: it must not fill its panel after the input changed)
        gr.on([c.change for c in (image, model, *controls)], stale, None,
              [div_map, div_note, fig_files, fig_preview, div_status, fig_status], api_visibility="private",
              queue=False, cancels=[first_map, asked_map, asked_figure])
        # the lab's results belong to its settings too: B's source and T included
        gr.on([c.change for c in (image, image_b, model, bits, tau, tau_b, seed, b_source, threshold)],
              lambda: (None, None, None, "", None, ""), None, [*lab_out, lab_status], api_visibility="private",
              queue=False, cancels=[first_swap, asked_swap, painted])
    return app


def json_safe(value):
    """NaN / inf (a metric that cannot be computed) -> None, so the JSON is standard."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def configure(app: gr.Blocks) -> gr.Blocks:
    return app.queue(default_concurrency_limit=_env_int("BDFLOW_CONCURRENCY", 1),
                     max_size=_env_int("BDFLOW_QUEUE_SIZE", 64))


def create(sources: list[str] | None = None) -> gr.Blocks:
    """The configured app from ``$BDFLOW_MODELS`` or ``checkpoints/`` (or the given folders / repo ids)."""
    from bdflow.demo import model_sources

    keep_freed_memory()  # process-wide: freed tensors are reused, not page-faulted in again (bdflow.accel)
    demo = Demo.from_sources(sources if sources is not None else model_sources(ROOT / "checkpoints"),
                             max_side=_env_int("BDFLOW_MAX_SIDE", DEFAULT_MAX_SIDE),
                             max_pixels=_env_int("BDFLOW_MAX_PIXELS", DEFAULT_MAX_PIXELS),
                             precision=env_precision())
    return configure(build(demo))


def launch_kwargs() -> dict:
    return {"max_file_size": os.environ.get("BDFLOW_MAX_FILE_SIZE", "25mb"), "show_error": False}


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)  # unexpected errors are logged with their traceback, here only
    create().launch(**launch_kwargs())
