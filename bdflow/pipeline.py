"""The user-facing API: ``Rescaler`` turns an image into what is stored (Y, B) and back (design §2, §5).

    r = Rescaler.from_pretrained("checkpoints/face-x16")
    enc = r.encode("face.png", bits=1)        # Encoded: y uint8 (h,w,3), b k-bit codes (h,w), meta
    out = r.decode(enc, tau=0.8, seed=0)     # PIL image of the original size

Inputs of any size are reflect-padded to a multiple of the scale and cropped back; grayscale, palette,
RGBA (composited on white), 16-bit and EXIF-rotated images are converted, with a note in ``meta["notes"]``.
The decoder sees only the stored Y and B and a Z sampled at temperature tau, never the HR image.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .accel import accelerate
from .encoded import Encoded
from .flow import BDFlow, sample_z
from .limits import DEFAULT_MAX_PIXELS, DEFAULT_TAU, check_bits, check_precision, check_seed, check_tau
from .quantize import b_to_codes, codes_to_b, y_to_uint8
from .resize import pad_to_multiple
from .tiles import tiled_forward, tiled_inverse

TILE_ABOVE = 1024  # HR sides above this run in tiles (bdflow.tiles) so memory stays bounded; up to it, whole
TILE_SIDE = 1024  # HR pixels per side of a tile's core
TILE_MARGIN = 256  # HR pixels of context per core: tiled = whole to 80-inf dB (benchmarks/tiles.py, design.md)
EXIF_ORIENTATION = 0x0112


# ----------------------------------------------------------------------------------------------------
# Image input and output
# ----------------------------------------------------------------------------------------------------


def _open(path: Path, max_pixels: int) -> Image.Image:
    if not path.is_file():
        raise ValueError(f"no such image file: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(path)
            _check_size(img.size, max_pixels)
            img.load()
    except UnidentifiedImageError as err:
        raise ValueError(f"{path.name} is not an image Pillow can read") from err
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ValueError(f"{path.name} is too large to decode safely: {err}") from err
    except (OSError, SyntaxError) as err:  # Pillow reports truncated and corrupt data this way
        raise ValueError(f"{path.name} is truncated or corrupt: {err}") from err
    return img


def _check_size(size: tuple[int, int], max_pixels: int) -> None:
    w, h = size
    if w * h > max_pixels:
        raise ValueError(f"image is {w}x{h} = {w * h:,} pixels, above the limit of {max_pixels:,} pixels")


def _pil_to_array(img: Image.Image, notes: list[str]) -> np.ndarray:
    """Any Pillow mode -> float32 RGB (H, W, 3) in [0, 1]."""
    if img.getexif().get(EXIF_ORIENTATION, 1) != 1:
        notes.append("applied the EXIF orientation")
        img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16L", "I;16B", "I", "F"):
        scale = 1.0 if img.mode == "F" else 65535.0
        notes.append(f"converted {img.mode} (high bit depth grayscale) to RGB")
        return _array_to_rgb(np.asarray(img, dtype=np.float32) / scale, notes)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        notes.append(f"composited {img.mode} alpha on white")
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32) / 255
        return rgba[..., :3] * rgba[..., 3:] + (1 - rgba[..., 3:])
    if img.mode != "RGB":
        notes.append(f"converted {img.mode} to RGB")
        img = img.convert("RGB")
    return np.asarray(img, dtype=np.float32) / 255


def _array_to_rgb(a: np.ndarray, notes: list[str]) -> np.ndarray:
    """(H,W), (H,W,1), (H,W,3) or (H,W,4) uint8/uint16/bool/float -> float32 RGB (H, W, 3) in [0, 1]."""
    if a.dtype == np.uint8:
        a = a.astype(np.float32) / 255
    elif a.dtype == np.uint16:
        notes.append("reduced 16-bit input to float")
        a = a.astype(np.float32) / 65535
    elif a.dtype == np.bool_:
        a = a.astype(np.float32)
    elif np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all() or a.min() < 0 or a.max() > 1:
            raise ValueError("a float image must hold finite values in [0, 1]")
        a = a.astype(np.float32)
    else:
        raise ValueError(f"unsupported array dtype {a.dtype}: use uint8, uint16, bool or float in [0, 1]")
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim == 2:
        notes.append("converted grayscale to RGB")
        return np.repeat(a[..., None], 3, axis=2)
    if a.ndim == 3 and a.shape[2] == 4:
        notes.append("composited RGBA alpha on white")
        return a[..., :3] * a[..., 3:] + (1 - a[..., 3:])
    if a.ndim == 3 and a.shape[2] == 3:
        return a
    raise ValueError(f"an image array must be (H,W), (H,W,1), (H,W,3) or (H,W,4), got {a.shape}")


def load_image(image, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[torch.Tensor, dict]:
    """Path / PIL / ndarray -> x (1,3,H,W) float32 in [0, 1] and how to give the result back (kind, dtype, notes)."""
    notes: list[str] = []
    if isinstance(image, (str, Path)):
        rgb, kind, dtype = _pil_to_array(_open(Path(image), max_pixels), notes), "pil", "uint8"
    elif isinstance(image, Image.Image):
        _check_size(image.size, max_pixels)
        rgb, kind, dtype = _pil_to_array(image, notes), "pil", "uint8"
    elif isinstance(image, np.ndarray):
        if image.ndim >= 2:
            _check_size((image.shape[1], image.shape[0]), max_pixels)
        rgb, kind, dtype = _array_to_rgb(image, notes), "ndarray", str(image.dtype)
    else:
        raise ValueError(f"expected an image path, a PIL image or a numpy array, got {type(image).__name__}")
    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None]
    return x, {"kind": kind, "dtype": dtype, "notes": notes}


def to_output(x: torch.Tensor, kind: str, dtype: str):
    """x (1,3,H,W) in [0, 1] -> a PIL image, or an (H,W,3) array of the input's dtype family."""
    rgb = x[0].clamp(0, 1).permute(1, 2, 0).cpu().numpy()
    if kind == "pil" or dtype == "uint8":
        u8 = np.floor(rgb * 255 + 0.5).astype(np.uint8)
        return Image.fromarray(u8) if kind == "pil" else u8
    if dtype == "uint16":
        return np.floor(rgb * 65535 + 0.5).astype(np.uint16)
    return rgb.astype(np.float32)


# ----------------------------------------------------------------------------------------------------
# The rescaler
# ----------------------------------------------------------------------------------------------------


class Rescaler:
    """A trained BDFlow with image I/O: ``encode`` to (Y, B), ``decode`` back to an HR image."""

    def __init__(self, model: BDFlow, max_pixels: int = DEFAULT_MAX_PIXELS, device: str | torch.device | None = None,
                 precision: str = "fp32"):
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.eval().to(self.device)
        self.max_pixels = max_pixels
        self.precision = check_precision(precision)
        self.net = accelerate(self.model, precision, self.device)  # what runs: the model itself at fp32

    @classmethod
    def from_pretrained(cls, name_or_path, max_pixels: int = DEFAULT_MAX_PIXELS, device=None, precision: str = "fp32",
                        **hub_kwargs) -> "Rescaler":
        """A checkpoint folder (e.g. ``checkpoints/face-x16``) or a Hugging Face Hub repo id; ``precision`` "bf16"
        runs the subnets in bfloat16 (``bdflow.accel``: ~2x faster on a CPU with AVX512-BF16, not bit-exact)."""
        model = BDFlow.from_pretrained(name_or_path, **hub_kwargs)
        return cls(model, max_pixels=max_pixels, device=device, precision=precision)

    def save_pretrained(self, directory, meta: dict | None = None):
        return self.model.save_pretrained(directory, meta=meta if meta is not None else getattr(self.model, "meta", None))

    @property
    def scale(self) -> int:
        return self.model.scale

    @property
    def tiling(self) -> tuple[int, int]:
        """(tile, margin) in LR pixels for images with a side above ``TILE_ABOVE``."""
        return max(1, TILE_SIDE // self.scale), -(-TILE_MARGIN // self.scale)

    @property
    def has_boundary(self) -> bool:
        return self.model.config.boundary

    @torch.inference_mode()
    def encode(self, image, bits: int = 1) -> Encoded:
        """Image -> Encoded(y uint8 (h,w,3), b uint8 codes (h,w) or None, bits, meta)."""
        bits = check_bits(bits)
        y, b, _, meta = self.forward_image(image)
        return self.quantize(y, b, bits, meta)

    @torch.inference_mode()
    def forward_image(self, image) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, dict]:
        """Image -> the flow's raw forward output y (1,3,h,w), b (1,1,h,w) or None, z (1,z_channels,h,w), before
        any quantisation, and the meta ``encode`` stores. ``quantize(y, b, bits, meta)`` then equals
        ``encode(image, bits)`` for every k, so one forward pass serves all bits (the app's cache); z is what
        ``decode`` replaces by a sample (to inspect how Gaussian it is)."""
        x, info = load_image(image, self.max_pixels)
        h, w = x.shape[-2:]
        xp = pad_to_multiple(x, self.scale).to(self.device)
        y, b, z = tiled_forward(self.net, xp, *self.tiling) if max(xp.shape[-2:]) > TILE_ABOVE else self.net(xp)
        meta = {
            **info,
            "scale": self.scale,
            "size": [int(h), int(w)],
            "padded": [int(xp.shape[-2]), int(xp.shape[-1])],
            "model": getattr(self.model, "name", "bdflow"),
        }
        return y, b, z, meta

    @staticmethod
    def quantize(y: torch.Tensor, b: torch.Tensor | None, bits: int, meta: dict) -> Encoded:
        """Raw forward y (1,3,h,w), b (1,1,h,w) or None -> Encoded: Y to 8 bits, B to k-bit codes."""
        bits = check_bits(bits)
        y8 = y_to_uint8(y)[0].permute(1, 2, 0).cpu().numpy()
        codes = None if b is None else b_to_codes(b, bits)[0, 0].cpu().numpy()
        return Encoded(y=y8, b=codes, bits=bits, meta=dict(meta))

    @property
    def default_tau(self) -> float:
        """The tau a decode uses unless told: the temperature the decoder was trained at, at most DEFAULT_TAU.

        Models trained at tau_train = 0 (the session-6 recipe, design "Recipe") decode best from Z = 0; the paper's
        recipe (tau_train = 1, and every checkpoint from before the field) keeps 0.8.
        """
        return min(self.model.config.tau_train, DEFAULT_TAU)

    @torch.inference_mode()
    def decode(self, enc: Encoded, tau: float | None = None, seed: int | None = 0):
        """Encoded -> HR image in the input's type family (PIL, or an ndarray of its dtype), original size.

        ``tau=None``: :attr:`default_tau`."""
        x = self.decode_tensor(enc, tau=tau, seed=seed)
        return to_output(x, enc.meta.get("kind", "pil"), enc.meta.get("dtype", "uint8"))

    @torch.inference_mode()
    def decode_tensor(self, enc: Encoded, tau: float | None = None, seed: int | None = 0) -> torch.Tensor:
        """Encoded -> x (1,3,H,W) in [0, 1], cropped to the original size (``tau=None``: :attr:`default_tau`)."""
        y, b = self._stored_tensors(enc)
        x = self.reconstruct(y, b, tau=self.default_tau if tau is None else tau, seed=seed)
        h, w = enc.meta.get("size", x.shape[-2:])
        return x[..., :h, :w]

    def reconstruct(self, y: torch.Tensor, b: torch.Tensor | None, tau: float, seed: int | None) -> torch.Tensor:
        """Inverse pass from (quantised) y (N,3,h,w), b (N,1,h,w) and Z ~ N(0, tau^2) with a seeded generator."""
        tau = check_tau(tau)
        generator = torch.Generator(device=self.device)
        generator.manual_seed(check_seed(seed) if seed is not None else torch.seed())
        z = sample_z(y, self.model.config.z_channels, tau, generator)
        if max(y.shape[-2:]) * self.scale > TILE_ABOVE:
            return tiled_inverse(self.net, y, b, z, *self.tiling).clamp(0, 1)
        return self.net.inverse(y, b, z).clamp(0, 1)

    def _stored_tensors(self, enc: Encoded) -> tuple[torch.Tensor, torch.Tensor | None]:
        bits = check_bits(enc.bits)
        y8 = np.asarray(enc.y)
        if y8.dtype != np.uint8 or y8.ndim != 3 or y8.shape[2] != 3:
            raise ValueError(f"Encoded.y must be uint8 (h,w,3), got {y8.dtype} {y8.shape}")
        if enc.meta.get("scale", self.scale) != self.scale:
            raise ValueError(f"this was encoded at x{enc.meta['scale']}, but the model is x{self.scale}")
        y = torch.from_numpy(y8.copy()).permute(2, 0, 1)[None].float().div(255).to(self.device)
        if not self.has_boundary:
            return y, None
        if enc.b is None or np.asarray(enc.b).shape != y8.shape[:2]:
            raise ValueError(f"Encoded.b must be uint8 codes shaped {y8.shape[:2]} for this model")
        b = codes_to_b(torch.from_numpy(np.asarray(enc.b, dtype=np.uint8).copy()), bits)
        return y, b[None, None].to(self.device)
