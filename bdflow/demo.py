"""The engine of the app (``app.py``), without Gradio: models found on disk or on the Hub, a per-input cache of
the encoder's work, decoding with the teaching toggles, and the numbers.

    demo = Demo.from_checkpoints("checkpoints")          # or Demo({"x16": "org/bdflow-face-x16"})
    an = demo.analyse("face.png", "x16")                 # one forward pass per (image, model), cached
    dec = demo.decode(an, bits=1, tau=0.8, seed=0)       # only the inverse pass: what the sliders move
    demo.scores(an, dec)                                 # PSNR/SSIM/LPIPS of the reconstruction and of bicubic

The forward pass does not depend on k (B is quantised afterwards), tau or the seed, so moving those sliders only
re-decodes. Every bad input raises ``ValueError`` with a message meant for the user.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

from . import viz
from .bam import bam
from .hub import find_checkpoints
from .image_io import load_image, to_output
from .levels import LevelView, record
from .limits import DEFAULT_TAU_B, check_bits, check_int, check_seed, check_tau, check_tau_b
from .lpips import LPIPSWeightsNotFound
from .metrics import Moments, channel_measures, lpips_rgb, psnr_y, sample_values, ssim_y
from .pipeline import DEFAULT_MAX_PIXELS, Encoded, Rescaler
from .quantize import to_8bit
from .resize import bicubic_lr_codes, bicubic_round_trip

DEFAULT_MAX_SIDE = 1024  # larger inputs are downscaled (with a notice) so that one decode stays interactive
Z_SAMPLE = 50_000  # Z values kept per input for the histogram
# the panels a figure for slides can hold (Demo.figure_panels)
FIGURE_PANELS = ("reconstruction", "HR", "bicubic round trip", "LR Y (nearest)", "BAM of the HR (k = 1)", "stored B",
                 "Z vs its Gaussian", "level by level")
ENV_MODELS = "BDFLOW_MODELS"  # comma-separated checkpoint folders or Hub repo ids; default: checkpoints/*


@dataclass
class Toggles:
    """The teaching toggles: what happens when the decoder gets something else than the flow's Y and B, or samples
    Z where B marks a boundary."""

    bicubic_lr: bool = False  # feed the bicubic LR instead of the flow's Y
    jpeg_quality: int | None = None  # JPEG the LR at this quality (None: stored losslessly)
    drop_b: bool = False  # replace B by zeros (no boundaries)
    tau_b: float = DEFAULT_TAU_B  # the share of tau Z keeps in B's boundary cells (flow.sample_z; 1: the paper's)

    def __post_init__(self):
        if self.jpeg_quality is not None:
            self.jpeg_quality = check_int(self.jpeg_quality, "the JPEG quality", 1, 100)
        self.tau_b = check_tau_b(self.tau_b)

    def key(self) -> tuple:
        return (bool(self.bicubic_lr), self.jpeg_quality, bool(self.drop_b), self.tau_b)


@dataclass
class Analysis:
    """The encoder's work for one (image, model): everything that does not depend on k, tau or the seed."""

    key: str
    label: str
    x: torch.Tensor  # the HR image used (1,3,H,W), 8-bit values in [0, 1], after any downscaling
    y: torch.Tensor  # raw forward Y (1,3,h,w)
    b: torch.Tensor | None  # raw forward B (1,1,h,w), None for a B-less model
    meta: dict
    bicubic_lr: np.ndarray  # uint8 (h,w,3), antialiased bicubic downscale of the padded HR
    bicubic: torch.Tensor  # the bicubic round trip (1,3,H,W)
    edges: np.ndarray  # bool (H,W): BAM of the HR image at k = 1 (Canny) under the model's BAM settings
    z: np.ndarray  # a sample of the forward Z values
    z_gt: np.ndarray  # a sample of Z_GT = HR - bicubic round trip (paper Fig. 2)
    z_channels: dict  # Z's channel means' share of E[z^2] and kurtosis within the channels (metrics.channel_measures)
    notes: list[str] = field(default_factory=list)
    bicubic_scores: dict | None = None
    levels: list[LevelView] = field(default_factory=list)  # the level view, recorded during the forward pass

    @property
    def scale(self) -> int:
        return self.meta["scale"]

    @property
    def hr_pixels(self) -> int:
        return int(self.x.shape[-2] * self.x.shape[-1])


@dataclass
class Stored:
    """What the decoder is given (``Demo.stored``): Y and B at k bits after the toggles, their sizes in bytes."""

    enc: Encoded
    y_bytes: int  # raw, or the JPEG's size with the JPEG toggle
    b_bytes: int  # k bits per code, 0 without B or with B dropped
    notes: list[str] = field(default_factory=list)  # what the toggles did


@dataclass
class Decoded:
    """One reconstruction and what the decoder was given."""

    x_hat: torch.Tensor  # (1,3,H,W) in [0, 1], 8-bit values
    enc: Encoded  # the Y and B the decoder saw
    y_bytes: int
    b_bytes: int
    bits_per_hr_pixel: float
    notes: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, stored: Stored, x_hat: torch.Tensor, hr_pixels: int, notes: list[str] | None = None) -> "Decoded":
        """The reconstruction ``x_hat`` of what was ``stored``, its rate per HR pixel (``notes``: else the stored's)."""
        return cls(x_hat=x_hat, enc=stored.enc, y_bytes=stored.y_bytes, b_bytes=stored.b_bytes,
                   bits_per_hr_pixel=8 * (stored.y_bytes + stored.b_bytes) / hr_pixels,
                   notes=stored.notes if notes is None else notes)

    @property
    def nbytes(self) -> int:
        return self.y_bytes + self.b_bytes


# ----------------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------------


def model_label(config: dict) -> str:
    """``x16`` for a BDFlow checkpoint, ``x16 without B (IRN-style twin)`` for its B-less twin."""
    label = f"×{int(config['scale'])}"
    return label if config.get("boundary", True) else f"{label} without B (IRN-style twin)"


def model_sources(root: str | Path = "checkpoints", env: str | None = None) -> list[str]:
    """The checkpoints the app offers: ``$BDFLOW_MODELS`` (folders or Hub repo ids, comma-separated) when set,
    else every checkpoint folder under ``root``."""
    env = os.environ.get(ENV_MODELS, "") if env is None else env
    sources = [s.strip() for s in env.split(",") if s.strip()]
    return sources or [str(p) for p in find_checkpoints(root)]


def _key_of(image) -> str:
    h = hashlib.sha1()
    if isinstance(image, (str, Path)):
        path = Path(image)
        if not path.is_file():
            raise ValueError(f"no such image file: {path.name}")
        h.update(path.read_bytes())
    elif isinstance(image, Image.Image):
        h.update(image.mode.encode() + repr(image.size).encode() + image.tobytes())
    elif isinstance(image, np.ndarray):
        h.update(str(image.dtype).encode() + repr(image.shape).encode() + np.ascontiguousarray(image).tobytes())
    else:
        raise ValueError(f"expected an image path, a PIL image or a numpy array, got {type(image).__name__}")
    return h.hexdigest()


def fit_side(x: torch.Tensor, max_side: int) -> tuple[torch.Tensor, str | None]:
    """Downscale (antialiased bicubic, 8-bit values) so the longer side is at most ``max_side``."""
    h, w = x.shape[-2:]
    if max(h, w) <= max_side:
        return x, None
    f = max_side / max(h, w)
    size = (max(1, round(h * f)), max(1, round(w * f)))
    small = F.interpolate(x, size=size, mode="bicubic", antialias=True, align_corners=False)
    return to_8bit(small), f"downscaled the {w}x{h} input to {size[1]}x{size[0]} (the app's limit is {max_side} px per side)"


def jpeg_round_trip(y8: np.ndarray, quality: int) -> tuple[np.ndarray, int]:
    """uint8 (h,w,3) -> (its JPEG decoded, the JPEG's size in bytes); 4:4:4 so the tiny LR keeps its colours."""
    buf = io.BytesIO()
    Image.fromarray(y8).save(buf, format="JPEG", quality=int(quality), subsampling=0)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")), buf.tell()


# ----------------------------------------------------------------------------------------------------
# The engine
# ----------------------------------------------------------------------------------------------------


class Demo:
    """Models by label, the per-input cache, decoding with toggles, scores."""

    def __init__(self, rescalers: dict[str, Rescaler], max_side: int = DEFAULT_MAX_SIDE, cache_size: int = 16):
        if not rescalers:
            raise ValueError("no checkpoints found: put a folder with config.json + safetensors under checkpoints/"
                             f" or name folders / Hub repo ids in ${ENV_MODELS}")
        if max_side < 16:
            raise ValueError(f"max_side must be at least 16, got {max_side}")
        self.rescalers = rescalers
        self.max_side = int(max_side)
        self.cache_size = int(cache_size)
        self._cache: OrderedDict[str, object] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def from_sources(cls, sources: list[str], max_side: int = DEFAULT_MAX_SIDE, max_pixels: int = DEFAULT_MAX_PIXELS,
                     device=None, precision: str = "fp32", **kwargs) -> Demo:
        """Load each checkpoint (folder or Hub repo id, through ``Rescaler.from_pretrained`` at ``precision``)
        under its label; models with B come first, then by scale."""
        loaded = []
        for source in sources:
            r = Rescaler.from_pretrained(source, max_pixels=max_pixels, device=device, precision=precision)
            c = r.model.config
            loaded.append((not c.boundary, c.scale, model_label(c.to_dict()), source, r))
        rescalers: dict[str, Rescaler] = {}
        for _, _, label, source, r in sorted(loaded, key=lambda t: t[:2]):
            if label in rescalers:
                label = f"{label} ({Path(source).name})"
            rescalers[label] = r
        return cls(rescalers, max_side=max_side, **kwargs)

    @classmethod
    def from_checkpoints(cls, root: str | Path = "checkpoints", **kwargs) -> Demo:
        return cls.from_sources(model_sources(root), **kwargs)

    @property
    def labels(self) -> list[str]:
        return list(self.rescalers)

    def rescaler(self, label: str) -> Rescaler:
        if label not in self.rescalers:  # accept "x16" for "×16"
            label = {k.replace("×", "x").lower(): k for k in self.rescalers}.get(str(label).replace("×", "x").lower(), label)
        if label not in self.rescalers:
            raise ValueError(f"unknown model {label!r}; choose one of: {', '.join(self.rescalers)}")
        return self.rescalers[label]

    # -- cache ------------------------------------------------------------------------------------------

    def _cached(self, key, make):
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        value = make()
        with self._lock:
            self._cache[key] = value
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return value

    # -- encoder side -----------------------------------------------------------------------------------

    def analyse(self, image, label: str) -> Analysis:
        """One forward pass and the per-input figures' data, cached per (image content, model, max side)."""
        r = self.rescaler(label)
        label = next(k for k, v in self.rescalers.items() if v is r)
        key = f"{_key_of(image)}|{label}|{self.max_side}"
        return self._cached(("analysis", key), lambda: self._analyse(image, label, r, key))

    @torch.inference_mode()
    def _analyse(self, image, label: str, r: Rescaler, key: str) -> Analysis:
        x, info = load_image(image, r.max_pixels)
        notes = list(info["notes"])
        size = f"{x.shape[-1]}x{x.shape[-2]}"  # as uploaded
        x, note = fit_side(to_8bit(x), self.max_side)
        if note:
            notes.append(note)
        h, w = x.shape[-2:]
        if h < r.scale or w < r.scale:
            shown = f" (downscaled to {w}x{h}: the app's limit is {self.max_side} px per side)" if note else ""
            raise ValueError(f"the image is {size}{shown}: at ×{r.scale} it needs at least {r.scale}x{r.scale} pixels")
        with record(r.net, (h, w)) as views:  # the level view comes from this same forward pass, of the net that runs
            f = r.forward_image(x)
        meta = {**f.meta, "kind": "pil", "dtype": "uint8", "notes": notes}
        z_moments = Moments(channel_dim=1)
        z_moments.add(f.z)
        bicubic = bicubic_round_trip(x, r.scale)
        c = r.model.config  # the panel shows the BAM this model was trained with (its T, sigma and norm)
        edges = bam(x, sigma=c.bam_sigma, norm=c.bam_norm, threshold=c.bam_threshold, bits=1)[0, 0].numpy() > 0
        return Analysis(
            key=key, label=label, x=x, y=f.y, b=f.b, meta=meta, bicubic_lr=bicubic_lr_codes(x, r.scale),
            bicubic=to_8bit(bicubic), edges=edges,
            z=sample_values(f.z, Z_SAMPLE), z_gt=sample_values(x - bicubic, Z_SAMPLE),
            z_channels=channel_measures(z_moments), notes=notes, levels=views,
        )

    def stored(self, an: Analysis, bits: int, toggles: Toggles | None = None) -> Stored:
        """What the decoder is given: Y and B at k bits after the toggles, and their sizes in bytes."""
        toggles = toggles or Toggles()
        bits = check_bits(bits)
        enc = Rescaler.quantize(an.y, an.b, bits, an.meta)
        notes = []
        if toggles.bicubic_lr:
            enc.y = an.bicubic_lr.copy()
            notes.append("Y replaced by the bicubic LR")
        y_bytes = enc.y.size
        if toggles.jpeg_quality is not None:
            enc.y, y_bytes = jpeg_round_trip(enc.y, toggles.jpeg_quality)
            notes.append(f"Y stored as JPEG q{toggles.jpeg_quality}: {y_bytes} bytes with headers, instead of {enc.y.size} raw")
        if enc.b is None:
            b_bytes = 0
            if toggles.drop_b:
                notes.append("this model has no B to drop")
        elif toggles.drop_b:
            enc.b = np.zeros_like(enc.b)
            b_bytes = 0
            notes.append("B dropped (all zeros)")
        else:
            b_bytes = math.ceil(enc.b.size * bits / 8)
        return Stored(enc, y_bytes, b_bytes, notes)

    # -- decoder side -----------------------------------------------------------------------------------

    def decode(self, an: Analysis, bits: int = 1, tau: float = 0.8, seed: int = 0, toggles: Toggles | None = None) -> Decoded:
        """The inverse pass only (the forward one is in ``an``); cached per (input, k, tau, seed, toggles)."""
        toggles = toggles or Toggles()
        bits, tau, seed = check_bits(bits), check_tau(tau), check_seed(seed)
        key = ("decode", an.key, bits, tau, seed, toggles.key())
        return self._cached(key, lambda: self._decode(an, bits, tau, seed, toggles))

    @torch.inference_mode()
    def _decode(self, an: Analysis, bits: int, tau: float, seed: int, toggles: Toggles) -> Decoded:
        r = self.rescaler(an.label)
        s = self.stored(an, bits, toggles)
        x_hat = to_8bit(r.decode(s.enc, tau=tau, seed=seed, output_type="pt", tau_b=toggles.tau_b).cpu())
        return Decoded.of(s, x_hat, an.hr_pixels)

    @torch.inference_mode()
    def diversity(self, an: Analysis, bits: int = 1, tau: float = 0.8, seed: int = 0, toggles: Toggles | None = None,
                  samples: int = 4) -> np.ndarray:
        """Per-pixel standard deviation (mean over RGB, 0-255 scale) of ``samples`` decodes with seeds
        seed, seed + 1, ... (modulo 2^63): where the sampled Z changes the picture. (H, W) float32."""
        tau, seed, samples = check_tau(tau), check_seed(seed), check_int(samples, "samples", 2, 32)
        toggles = toggles or Toggles()
        r = self.rescaler(an.label)
        y, b = r.stored_tensors(self.stored(an, bits, toggles).enc)
        h, w = an.x.shape[-2:]
        return r.spread(y, b, tau, seed, samples, toggles.tau_b)[:h, :w].numpy().astype(np.float32)

    def bicubic_scores(self, an: Analysis) -> dict:
        if an.bicubic_scores is None:
            an.bicubic_scores = _scores(an.bicubic, an.x, an.scale)
        return an.bicubic_scores

    def scores(self, an: Analysis, dec: Decoded) -> dict:
        """PSNR-Y / SSIM-Y (border = scale) and LPIPS of the reconstruction and of the bicubic round trip,
        bytes of Y + B and bits per HR pixel."""
        bicubic_bytes = an.bicubic_lr.size
        return {
            "reconstruction": _scores(dec.x_hat, an.x, an.scale),
            "bicubic": self.bicubic_scores(an),
            "bytes_y": dec.y_bytes,
            "bytes_b": dec.b_bytes,
            "bytes": dec.nbytes,
            "bits_per_hr_pixel": dec.bits_per_hr_pixel,
            "bicubic_bits_per_hr_pixel": 8 * bicubic_bytes / an.hr_pixels,
            "hr_size": list(an.x.shape[-2:]),
            "lr_size": list(dec.enc.y.shape[:2]),
        }


    def figure_panels(self, an: Analysis, dec: Decoded, bits: int, names=FIGURE_PANELS) -> dict[str, np.ndarray]:
        """The named panels of :data:`FIGURE_PANELS` for one decode, title -> uint8 RGB (``viz.export_figure``)."""
        unknown = [n for n in names if n not in FIGURE_PANELS]
        if unknown:
            raise ValueError(f"unknown panel {unknown[0]!r}; choose one of: {', '.join(FIGURE_PANELS)}")
        h, w = an.x.shape[-2:]
        make = (lambda: to_output(dec.x_hat, "ndarray", "uint8"), lambda: to_output(an.x, "ndarray", "uint8"),
                lambda: to_output(an.bicubic, "ndarray", "uint8"),
                lambda: viz.enlarge_nearest(dec.enc.y, an.scale)[:h, :w], lambda: viz.framed(viz.edges_image(an.edges)),
                lambda: viz.framed(viz.codes_image(dec.enc.b, bits, an.scale, (h, w))),
                lambda: viz.z_histogram(an.z, an.z_gt), lambda: viz.levels_image(an.levels))
        return {name: fn() for name, fn in zip(FIGURE_PANELS, make) if name in names}


def figure_caption(an: Analysis, s: dict, bits: int, tau: float, seed: int, toggles: Toggles | None = None) -> str:
    """What a slide needs to say: model, scale, tau, bits, seed, toggles, PSNR/LPIPS of the reconstruction and of
    bicubic."""
    rec, bic, toggles = s["reconstruction"], s["bicubic"], toggles or Toggles()
    on = [name for name, value in zip(("bicubic LR", "JPEG LR", "B dropped"), toggles.key()) if value]
    return (f"BDFlow {an.label} (scale {an.scale}), τ = {float(tau):.2f}, τ_b = {toggles.tau_b:.2f}, "
            f"k = {int(bits)} bit(s) of B, seed {int(seed)}"
            f"{' · ' + ', '.join(on) if on else ''} · reconstruction: PSNR-Y {rec['psnr']:.2f} dB, LPIPS "
            f"{rec['lpips']:.3f} · bicubic round trip: PSNR-Y {bic['psnr']:.2f} dB, LPIPS {bic['lpips']:.3f}")


def levels_markdown(views: list[LevelView]) -> str:
    """The level view's numbers: per level, the RMS of the detail slots before and after its InvBlocks and how
    much the blocks changed the low-pass slot; the last level's slots; and how B enters the flow."""
    head = ("| level | channels | detail RMS, wavelet | detail RMS, after InvBlocks | mean abs change of the low-pass "
            "(0-255) |\n|---|---|---|---|---|")
    rows = [f"| {v.index}{(' (Y, B, Z)' if v.after_b is not None else ' (Y, Z)') if v.last else ''} | {v.channels} | "
            f"{v.stats['detail_rms_before']:.4f} | {v.stats['detail_rms_after']:.4f} | {v.stats['low_change']:.2f} |"
            for v in views]
    reading = [v.index for v in views if v.condition is not None]
    if any(v.after_b is not None for v in views):
        how = "B is the last level's channel 3, split off beside Y and Z."
    elif reading:
        which = ("every coupling" if len(reading) == len(views)
                 else f"every coupling of levels {reading[0]}–{reading[-1]}")
        how = (f"B is stored beside Y, not as a channel of the flow: {which} reads it as a condition, on its "
               "level's grid (the last tile of each row; at the last level the stored B itself).")
    else:
        how = "This model stores no B: Y and Z only."
    return "\n".join([head, *rows]) + f"\n\n_{how}_"


def _scores(x_hat: torch.Tensor, x: torch.Tensor, scale: int) -> dict:
    """PSNR-Y / SSIM-Y with border = scale (no border for tiny images), LPIPS; NaN where a metric cannot be
    computed (SSIM below 11 px, LPIPS below its minimum size or without its weights: see ``lpips_note``)."""
    border = scale if min(x.shape[-2:]) - 2 * scale >= 11 else 0
    out = {"psnr": float(psnr_y(x_hat, x, border=border))}
    out["ssim"] = float(ssim_y(x_hat, x, border=border)) if min(x.shape[-2:]) - 2 * border >= 11 else float("nan")
    try:
        out["lpips"] = float(lpips_rgb(x_hat, x))
    # a broken install without the shipped weights, or an image smaller than AlexNet's receptive field
    except (LPIPSWeightsNotFound, ValueError) as err:
        out["lpips"], out["lpips_note"] = float("nan"), str(err)
    return out


def scores_markdown(s: dict | None, dec: Decoded | None = None) -> str:
    """The numbers panel: a Markdown table (metrics left as '…' while they are computed)."""
    def row(name, m, nbytes, bpp):
        if m is None:
            return f"| {name} | … | … | … | {nbytes} | {bpp:.4f} |"
        return f"| {name} | {m['psnr']:.2f} | {m['ssim']:.4f} | {m['lpips']:.4f} | {nbytes} | {bpp:.4f} |"

    head = "| vs the HR | PSNR-Y (dB) | SSIM-Y | LPIPS | bytes | bits / HR px |\n|---|---|---|---|---|---|"
    if s is None:
        if dec is None:
            return ""
        return "\n".join([head, row("reconstruction", None, f"{dec.y_bytes} (Y) + {dec.b_bytes} (B)", dec.bits_per_hr_pixel)])
    hr = s["hr_size"][0] * s["hr_size"][1]
    rows = [head,
            row("reconstruction", s["reconstruction"], f"{s['bytes_y']} (Y) + {s['bytes_b']} (B)", s["bits_per_hr_pixel"]),
            row("bicubic round trip", s["bicubic"], f"{round(s['bicubic_bits_per_hr_pixel'] * hr / 8)} (LR)",
                s["bicubic_bits_per_hr_pixel"])]
    return "\n".join(rows)
