"""BDFlow in the browser: see the decoupling of an image into Y (LR), B (boundaries) and Z (Gaussian).

    pip install -r requirements.txt && python app.py          # http://127.0.0.1:7860

Layout and wiring only: the work is in ``bdflow.demo`` (cache, decoding, toggles, numbers) and ``bdflow.viz``
(figures). Settings (environment variables):
    BDFLOW_MODELS        comma-separated checkpoint folders or Hugging Face Hub repo ids (default: checkpoints/*)
    BDFLOW_MAX_SIDE      longer side above which inputs are downscaled, with a notice (default 1024)
    BDFLOW_MAX_PIXELS    inputs above this many pixels are refused (default 4096 x 4096)
    BDFLOW_MAX_FILE_SIZE upload limit (default "25mb")
    BDFLOW_CONCURRENCY   model calls run at once (default 1: one call uses every core)
    BDFLOW_QUEUE_SIZE    requests waiting at most (default 64)
Endpoints (``gradio_client``): /encode, /decode, /scores, /diversity.
"""

from __future__ import annotations

import functools
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

from bdflow import viz  # noqa: E402
from bdflow.demo import DEFAULT_MAX_SIDE, Demo, Toggles, scores_markdown  # noqa: E402
from bdflow.pipeline import DEFAULT_MAX_PIXELS, DEFAULT_TAU, to_output  # noqa: E402

ROOT = Path(__file__).resolve().parent
ASSETS = ROOT / "assets"
EXAMPLE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
log = logging.getLogger("bdflow.app")

INTRO = """# BDFlow: boundary-aware decoupled flow rescaling
An invertible flow turns the HR image X into **Y** (an 8-bit image, 1/s per side), **B** (a k-bit boundary map
on Y's grid) and **Z** (pushed towards a Gaussian). Only Y and B are stored; the decoder samples Z ~ N(0, τ²).
Move τ, bits or the seed: only the decoder runs again. The checkpoints here are early CPU-trained models."""

TEACHES = """### What each panel shows
- **Reconstruction | HR**: drag the slider to compare the decoded image with the input. Beside it, the
  **bicubic round trip** (bicubic down to the same LR size, bicubic up) is the baseline every number is compared with.
- **LR Y**: what is stored, at true size and enlarged (nearest). It is not a bicubic thumbnail: the flow hides
  high-frequency information in it (tick *feed a bicubic LR* to see what that is worth).
- **BAM / stored B**: the Boundary-aware Mask of the HR image (Canny-like, Algorithm 1) and the k-bit B the flow
  stores on the LR grid, 1/24 of Y's bits at k = 1. *Drop B* shows what the boundaries carry.
- **Z histogram** (the paper's Fig. 2): the forward Z of this image with its Gaussian fit, against the N(0, 1)
  prior the decoder samples from; and Z_GT = HR − bicubic round trip, the high frequencies a plain LR loses,
  which is *not* Gaussian (heavy tails at boundaries). That is why B is split off.
- **Diversity map**: per-pixel standard deviation over several Z samples: where the sampled Z, not Y or B,
  decides the pixels. τ = 0 gives the deterministic mean and a black map.
- **Numbers**: PSNR-Y/SSIM-Y (border = scale) and LPIPS against the HR, bytes of Y + B and bits per HR pixel.
  *JPEG the LR* shows the rate/quality trade when Y itself is compressed."""


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        raise SystemExit(f"{name} must be an integer, got {os.environ[name]!r}") from None


def user_errors(fn):
    """Every failure reaches the user as a gr.Error with a clear message, never a traceback in the UI."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except (ValueError, FileNotFoundError) as err:
            raise gr.Error(str(err), print_exception=False) from None
        except MemoryError:
            raise gr.Error("out of memory: try a smaller image", print_exception=False) from None
        except Exception as err:  # a bug: keep the traceback in the server log only
            log.exception("unexpected error in %s", fn.__name__)
            raise gr.Error(f"unexpected server error ({type(err).__name__}); please try another image",
                           print_exception=False) from None

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
        import hashlib
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


def _path(image) -> str | None:
    """The uploaded file's path from the raw payload (events run with preprocess=False, so that even a file
    Pillow cannot open reaches bdflow's loader and its clear message)."""
    if image is None:
        return None
    if isinstance(image, dict):
        return image.get("path")
    return str(image)


def build(demo: Demo, examples_dir: Path = ASSETS) -> gr.Blocks:
    """The Blocks app for a ``Demo`` (queue settings are applied by ``configure``)."""
    labels = demo.labels
    png = PngFiles()

    def u8(x):  # (1,3,H,W) in [0, 1] -> uint8 (H,W,3)
        return to_output(x, "ndarray", "uint8")

    def toggles(bicubic_lr, jpeg_on, jpeg_q, drop_b) -> Toggles:
        return Toggles(bicubic_lr=bool(bicubic_lr), jpeg_quality=int(jpeg_q) if jpeg_on else None, drop_b=bool(drop_b))

    def analysis(image, model):
        path = _path(image)
        if path is None:
            raise gr.Error("upload an image first (or pick an example)", print_exception=False)
        return demo.analyse(path, model)

    @user_errors
    def encode(image, model):
        """Forward pass (cached per image and model): HR boundary map, Z histogram, notes."""
        if _path(image) is None:
            return None, None, ""
        an = analysis(image, model)
        for note in an.notes:
            if note.startswith("downscaled"):
                gr.Warning(note)
        h, w = an.x.shape[-2:]
        lr_h, lr_w = an.y.shape[-2:]
        z_channels = demo.rescaler(model).model.config.z_channels
        lines = [f"**{model}** · HR {w}×{h} · LR {lr_w}×{lr_h} · Z has {z_channels} channels", *[f"- {n}" for n in an.notes]]
        return png(viz.edges_image(an.edges)), png(viz.z_histogram(an.z, an.z_gt)), "\n".join(lines)

    @user_errors
    def decode(image, model, bits=1, tau=DEFAULT_TAU, seed=0, bicubic_lr=False, jpeg_on=False, jpeg_q=75, drop_b=False):
        """Inverse pass only: LR given to the decoder, stored B, reconstruction vs HR, bicubic, bytes."""
        if _path(image) is None:
            return None, None, None, None, None, ""
        an = analysis(image, model)
        dec = demo.decode(an, int(bits), tau, seed, toggles(bicubic_lr, jpeg_on, jpeg_q, drop_b))
        h, w = an.x.shape[-2:]
        hr, rec = png(u8(an.x), (an.key, "hr")), png(u8(dec.x_hat))
        b_panel = png(viz.codes_image(dec.enc.b, int(bits), an.scale, (h, w)))
        table = scores_markdown(None, dec) + "".join(f"\n\n_{n}_" for n in dec.notes)
        return (png(dec.enc.y), png(viz.enlarge_nearest(dec.enc.y, an.scale)[:h, :w]), b_panel, (rec, hr),
                png(u8(an.bicubic), (an.key, "bicubic")), table)

    @user_errors
    def scores(image, model, bits=1, tau=DEFAULT_TAU, seed=0, bicubic_lr=False, jpeg_on=False, jpeg_q=75, drop_b=False):
        """PSNR/SSIM/LPIPS of the reconstruction and of bicubic, bytes of Y + B, bits per HR pixel."""
        if _path(image) is None:
            return "", None
        an = analysis(image, model)
        dec = demo.decode(an, int(bits), tau, seed, toggles(bicubic_lr, jpeg_on, jpeg_q, drop_b))
        s = demo.scores(an, dec)
        return scores_markdown(s) + "".join(f"\n\n_{n}_" for n in dec.notes), json_safe(s)

    @user_errors
    def diversity(image, model, bits=1, tau=DEFAULT_TAU, seed=0, bicubic_lr=False, jpeg_on=False, jpeg_q=75,
                  drop_b=False, samples=4):
        """Per-pixel std over ``samples`` Z samples (seeds seed ... seed + samples - 1)."""
        if _path(image) is None:
            return None, ""
        an = analysis(image, model)
        std = demo.diversity(an, int(bits), tau, seed, toggles(bicubic_lr, jpeg_on, jpeg_q, drop_b), int(samples))
        img, vmax = viz.heat_image(std)
        return png(img), (f"std over {int(samples)} samples at τ = {float(tau):.2f}: black 0, bright ≥ {vmax:.2f} "
                     f"(0–255 scale); mean {float(std.mean()):.2f}")

    # delete_cache: files of the app older than an hour are removed every hour (a long-running Space stays small)
    with gr.Blocks(title="BDFlow: see the decoupling", delete_cache=(3600, 3600)) as app:
        gr.Markdown(INTRO)
        with gr.Row():
            with gr.Column(scale=1, min_width=320):
                image = gr.Image(label="HR input", type="filepath", sources=["upload", "clipboard"], height=300,
                                 elem_id="hr-input")
                examples = sorted(p for p in examples_dir.glob("*") if p.suffix.lower() in EXAMPLE_SUFFIXES)
                if examples:
                    gr.Examples([[str(p)] for p in examples], inputs=[image], label="examples (assets/)",
                                cache_examples=False, examples_per_page=8)
                model = gr.Dropdown(labels, value=labels[0], label="scale (checkpoints found)", elem_id="model")
                bits = gr.Slider(1, 4, value=1, step=1, label="bits of B (k)", elem_id="bits")
                tau = gr.Slider(0, 1.5, value=DEFAULT_TAU, step=0.05, label="Z temperature τ", elem_id="tau")
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
                with gr.Row():
                    slider = gr.ImageSlider(label="reconstruction | HR", type="numpy", format="png", elem_id="recon")
                    bicubic = gr.Image(label="bicubic round trip", format="png", elem_id="bicubic")
                table = gr.Markdown(label="table", elem_id="numbers")
                with gr.Accordion("numbers as JSON", open=False):
                    numbers = gr.JSON(label="numbers")
                with gr.Row():
                    lr_true = gr.Image(label="LR Y given to the decoder (true size)", format="png", height=160,
                                       elem_id="lr-true")
                    lr_big = gr.Image(label="LR Y enlarged (nearest)", format="png", elem_id="lr-big")
                with gr.Row():
                    edges = gr.Image(label="BAM of the HR image (k = 1)", format="png", elem_id="bam")
                    b_panel = gr.Image(label="stored B (k bits, LR grid, nearest)", format="png", elem_id="b")
                zhist = gr.Image(label="Z vs its Gaussian (paper Fig. 2)", format="png", elem_id="zhist")
                with gr.Row():
                    div_map = gr.Image(label="diversity map (std over Z samples)", format="png", elem_id="diversity")
                    with gr.Column():
                        samples = gr.Slider(2, 8, value=4, step=1, label="samples")
                        div_btn = gr.Button("compute the diversity map", elem_id="div-btn")
                        div_note = gr.Markdown(label="caption")
        gr.Markdown(TEACHES)

        dec_in = [image, model, bits, tau, seed, bicubic_lr, jpeg_on, jpeg_q, drop_b]
        dec_out = [lr_true, lr_big, b_panel, slider, bicubic, table]
        common = {"preprocess": False, "concurrency_id": "model", "show_progress": "minimal"}

        # The public endpoints first (the names are taken in order); the other triggers are private copies.
        for i, control in enumerate((bits, tau, seed, bicubic_lr, jpeg_on, jpeg_q, drop_b)):
            api = (lambda name: {"api_name": name}) if i == 0 else (lambda name: {"api_visibility": "private"})
            (control.change(decode, dec_in, dec_out, trigger_mode="always_last", **api("decode"), **common)
             .then(scores, dec_in, [table, numbers], **api("scores"), **common))
        for trigger, api in ((image.change, {"api_name": "encode"}), (model.change, {"api_visibility": "private"})):
            (trigger(encode, [image, model], [edges, zhist, notes], trigger_mode="always_last", **api, **common)
             .then(decode, dec_in, dec_out, api_visibility="private", **common)
             .then(scores, dec_in, [table, numbers], api_visibility="private", **common))
        again.click(lambda: random.randrange(2**31), None, seed, api_visibility="private", queue=False)
        div_btn.click(diversity, [*dec_in, samples], [div_map, div_note], api_name="diversity", **common)
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

    demo = Demo.from_sources(sources if sources is not None else model_sources(ROOT / "checkpoints"),
                             max_side=_env_int("BDFLOW_MAX_SIDE", DEFAULT_MAX_SIDE),
                             max_pixels=_env_int("BDFLOW_MAX_PIXELS", DEFAULT_MAX_PIXELS))
    return configure(build(demo))


def launch_kwargs() -> dict:
    return {"max_file_size": os.environ.get("BDFLOW_MAX_FILE_SIZE", "25mb"), "show_error": False}


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)  # unexpected errors are logged with their traceback, here only
    create().launch(**launch_kwargs())
