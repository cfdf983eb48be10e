"""Image input and output, one place for the whole package (like diffusers' ``VaeImageProcessor``):

- :func:`load_image`: a path, PIL image, ndarray or an already loaded tensor -> x (1,3,H,W) float32 in [0, 1], and
  how to give the result back in the input's type; grayscale, palette, RGBA (composited on white), 16-bit and
  EXIF-rotated images are converted, with a note each;
- :func:`to_output`: x (1,3,H,W) -> a PIL image, an ndarray of the input's dtype family, or the tensor itself;
- :func:`pad_to_multiple`: reflect padding to a multiple of the scale (design §5);
- :func:`read_rgb`: the training reader, an image file -> (3,H,W) (RGB files, no conversion notes).

What is stored (``Encoded``) becomes tensors through ``Encoded.to_tensors``; its Y and B are no images of the user's.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch.nn import functional as F

from .limits import DEFAULT_MAX_PIXELS
from .quantize import y_to_uint8

EXIF_ORIENTATION = 0x0112
OUTPUT_KINDS = ("pil", "ndarray", "pt")  # meta["kind"]: what load_image was given, what to_output gives back


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


def _check_tensor(x: torch.Tensor) -> torch.Tensor:
    """An RGB tensor (3,H,W) or (1,3,H,W), floating point, finite, in [0, 1] -> (1,3,H,W) float32, detached."""
    if x.dim() == 3:
        x = x[None]
    if x.dim() != 4 or x.shape[:2] != (1, 3):
        raise ValueError(f"an image tensor must be (3,H,W) or (1,3,H,W), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"an image tensor must be floating point in [0, 1], got {x.dtype}")
    x = x.detach().float()
    if not torch.isfinite(x).all() or x.min() < 0 or x.max() > 1:
        raise ValueError("an image tensor must hold finite values in [0, 1]")
    return x


def load_image(image, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[torch.Tensor, dict]:
    """Path / PIL / ndarray / tensor (3,H,W) or (1,3,H,W) -> x (1,3,H,W) float32 in [0, 1] and how to give the result
    back (kind, dtype, notes). A tensor is taken as it is (no copy through a file or an array)."""
    notes: list[str] = []
    if isinstance(image, torch.Tensor):
        x = _check_tensor(image)
        _check_size((x.shape[-1], x.shape[-2]), max_pixels)
        return x, {"kind": "pt", "dtype": str(image.dtype).removeprefix("torch."), "notes": notes}
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
        raise ValueError(f"expected an image path, a PIL image, a numpy array or a tensor, got {type(image).__name__}")
    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None]
    return x, {"kind": kind, "dtype": dtype, "notes": notes}


def to_output(x: torch.Tensor, kind: str, dtype: str):
    """x (1,3,H,W) in [0, 1] -> a PIL image (kind "pil"), an (H,W,3) array of ``dtype``'s family (uint8, uint16,
    else float32; kind "ndarray"), or x itself (kind "pt")."""
    if kind not in OUTPUT_KINDS:
        raise ValueError(f"kind must be one of {OUTPUT_KINDS}, got {kind!r}")
    if kind == "pt":
        return x
    if kind == "pil" or dtype == "uint8":
        u8 = y_to_uint8(x[0]).permute(1, 2, 0).cpu().numpy()
        return Image.fromarray(u8) if kind == "pil" else u8
    rgb = x[0].clamp(0, 1).permute(1, 2, 0).cpu().numpy()
    if dtype == "uint16":
        return np.floor(rgb * 65535 + 0.5).astype(np.uint16)
    return rgb.astype(np.float32)


def pad_to_multiple(x: torch.Tensor, scale: int) -> torch.Tensor:
    """Reflect-pad bottom and right so H and W are multiples of ``scale`` (design §5)."""
    h, w = x.shape[-2:]
    if h < scale or w < scale:
        raise ValueError(f"image is {w}x{h}, smaller than one LR pixel ({scale}x{scale}) at x{scale}")
    return F.pad(x, (0, -w % scale, 0, -h % scale), mode="reflect")


def read_rgb_uint8(path: str | Path) -> torch.Tensor:
    """An image file -> (3,H,W) uint8 RGB (the training reader: no EXIF or alpha handling)."""
    with Image.open(path) as img:
        rgb = np.array(img.convert("RGB"), dtype=np.uint8)  # a writable copy for torch.from_numpy
    return torch.from_numpy(rgb).permute(2, 0, 1).contiguous()


def read_rgb(path: str | Path) -> torch.Tensor:
    """An image file -> (3,H,W) float32 RGB in [0, 1] (:func:`read_rgb_uint8` / 255)."""
    return read_rgb_uint8(path).float().div_(255)
