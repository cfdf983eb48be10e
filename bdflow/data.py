"""Training and evaluation data: folders of real photos (``../shared/data``, see its README).

Training batches are a pure function of (seed, step, process): which images, where to crop, whether to flip
and which ``bits`` to train with all come from a counter-based generator. A resumed run therefore sees
exactly the batches it would have seen, with no data-loader state to save.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .image_io import read_rgb_uint8
from .limits import IMAGE_SUFFIXES, MAX_BITS, is_image_file
from .quantize import codes8
from .resize import bicubic_enlarge

ALL_BITS = tuple(range(1, MAX_BITS + 1))  # the k a training batch may draw: every k a stored B can have


def list_images(folder: str | Path) -> list[Path]:
    """Image files of a folder, sorted by name (the MANIFEST and other files are skipped)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if is_image_file(p))
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    return files


class CropBatches(Dataset):
    """Item t is the training batch of step t: (x (B,3,crop,crop) in [0, 1], bits).

    With ``cache`` each image is decoded once and kept as uint8 (0.75 MB per 512² face, 2.7 GB for faces/train):
    decoding 8 JPEGs took ~30 ms of a ~200 ms x8 step (benchmarks/speed.py --train). The crop is converted to
    float after cropping, which gives the same values as converting first: the batches are bit for bit the same.

    With ``zoom`` > 1 each crop is cut from the image enlarged by its own factor f ~ U(zoom_min, zoom): a window of
    crop / f pixels, bicubic-enlarged to the crop and rounded to 8 bits. A face fills more pixels, as on a 1024²
    photo, where the flow meets smoother cells than on the 512² training faces (docs/studies/gaussian-z.md
    "On larger photos"). At zoom 1 no factor is drawn: the batches are those of a run without it.
    ``zoom_min`` > 1 allows crops larger than the images (a 1024² crop of a 512² face at zoom_min = zoom = 2), so
    that the flow's coarsest levels see the grid of a 1024² photo (docs/studies/gaussian-z.md "The crop's grid").

    ``turns`` are further (crop, batch_size) pairs that take turns with (crop, batch_size) step by step: step t draws
    its batch at ``sizes[t % len(sizes)]``, so one run sees the grids of several crop sizes (a Z fitted on one
    grid is narrower on others, ibid.). Without turns every step is (crop, batch_size), as before.
    """

    def __init__(self, folder, crop: int, batch_size: int, bits_choices=ALL_BITS, seed: int = 0, rank: int = 0,
                 steps: int = 10**9, cache: bool = False, zoom: float = 1.0, zoom_min: float = 1.0,
                 turns: tuple[tuple[int, int], ...] = ()):
        if zoom < 1:
            raise ValueError(f"zoom must be >= 1 (1: off), got {zoom}")
        if not 1 <= zoom_min <= zoom:
            raise ValueError(f"zoom_min must be in [1, zoom = {zoom:g}], got {zoom_min:g}")
        self.files = list_images(folder)
        self.zoom, self.zoom_min = zoom, zoom_min
        self.sizes = ((crop, batch_size), *turns)  # (crop, batch_size) of step t: sizes[t % len(sizes)]
        self.bits_choices = tuple(bits_choices)
        self.seed, self.rank, self.steps = seed, rank, steps
        self._cache: dict[int, torch.Tensor] | None = {} if cache else None

    def _image(self, i: int) -> torch.Tensor:
        """Image i as uint8 (3,H,W), decoded once when caching."""
        if self._cache is None:
            return read_rgb_uint8(self.files[i])
        if i not in self._cache:
            self._cache[i] = read_rgb_uint8(self.files[i])
        return self._cache[i]

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, step: int) -> tuple[torch.Tensor, int]:
        crop, batch_size = self.sizes[step % len(self.sizes)]
        rng = np.random.default_rng([self.seed, self.rank, step])
        picks = rng.integers(len(self.files), size=batch_size)
        crops = [self._crop(self._image(i), crop, rng).float().div_(255) for i in picks]
        bits = int(rng.choice(self.bits_choices))
        return torch.stack(crops), bits

    def _crop(self, img: torch.Tensor, crop: int, rng: np.random.Generator) -> torch.Tensor:
        _, h, w = img.shape
        window = crop if self.zoom == 1 else round(crop / rng.uniform(self.zoom_min, self.zoom))
        if h < window or w < window:
            raise ValueError(f"training image {h}x{w} is smaller than the crop {crop}"
                             + (f" at zoom {crop / window:.2f} ({window}² of the image)" if window != crop else ""))
        top, left = rng.integers(h - window + 1), rng.integers(w - window + 1)
        patch = img[:, top : top + window, left : left + window]
        if window != crop:
            patch = codes8(bicubic_enlarge(patch[None].float() / 255, crop))[0].to(torch.uint8)
        if rng.random() < 0.5:
            patch = patch.flip(-1)  # horizontal flip; faces are aligned, so no vertical flips
        return patch
