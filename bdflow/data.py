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
    """

    def __init__(self, folder, crop: int, batch_size: int, bits_choices=ALL_BITS, seed: int = 0, rank: int = 0,
                 steps: int = 10**9, cache: bool = False):
        self.files = list_images(folder)
        self.crop, self.batch_size = crop, batch_size
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
        rng = np.random.default_rng([self.seed, self.rank, step])
        picks = rng.integers(len(self.files), size=self.batch_size)
        crops = [self._crop(self._image(i), rng).float().div_(255) for i in picks]
        bits = int(rng.choice(self.bits_choices))
        return torch.stack(crops), bits

    def _crop(self, img: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        _, h, w = img.shape
        if h < self.crop or w < self.crop:
            raise ValueError(f"training image {h}x{w} is smaller than the crop {self.crop}")
        top, left = rng.integers(h - self.crop + 1), rng.integers(w - self.crop + 1)
        patch = img[:, top : top + self.crop, left : left + self.crop]
        if rng.random() < 0.5:
            patch = patch.flip(-1)  # horizontal flip; faces are aligned, so no vertical flips
        return patch
