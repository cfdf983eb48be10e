"""What a user may pass in, one rule each: the CLI (as argparse ``type=`` functions), the app, ``Demo`` and
``Rescaler`` call the same functions, so a value refused in one place is refused everywhere, with one message.

Torch-free (and Gradio-free), so that ``python -m bdflow info`` and argument errors stay fast.
"""

from __future__ import annotations

import argparse
import math
import numbers
from pathlib import Path

MAX_BITS = 4  # k of a stored B: 1..MAX_BITS (the .bdf header and the training --bits too)
DEFAULT_TAU = 0.8
MAX_TAU = 10.0  # far beyond any useful temperature (the app's slider stops at 1.5): above it, Z is pure noise
# tau_b: the share of tau that Z keeps in B's boundary cells (flow.sample_z; design.md "Where Z is sampled"): 0, the
# default, leaves Z at its mean where the stored B marks a boundary; 1 is the paper's one tau everywhere
DEFAULT_TAU_B = 0.0
MAX_SEED = 2**63 - 1  # torch.Generator.manual_seed takes a 64-bit seed; larger ones would wrap around silently
DEFAULT_MAX_PIXELS = 4096 * 4096  # refuse larger inputs (decompression bombs, memory)

# Images read (single file and folder mode alike) and written (the format is the one the suffix names).
IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP", ".tif": "TIFF",
                 ".tiff": "TIFF", ".gif": "GIF"}
IMAGE_SUFFIXES = tuple(IMAGE_FORMATS)
BDF_SUFFIX = ".bdf"


def check_int(value, name: str, low: int, high: int, high_text: str | None = None) -> int:
    """An integer in [low, high], given as an int or a whole float (3.0, as JSON clients send). 1.5, NaN, True, strings
    and out-of-range values are refused with '<name> must be an integer from <low> to <high>, got <value>'."""
    whole = isinstance(value, numbers.Real) and not isinstance(value, bool) and (
        isinstance(value, numbers.Integral) or math.isfinite(value) and value == int(value))
    if not whole or not low <= int(value) <= high:
        raise ValueError(f"{name} must be an integer from {low} to {high_text or high}, got {value!r}")
    return int(value)


def check_tau(value) -> float:
    """The temperature of Z: a finite number (int or float) in [0, MAX_TAU]."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise ValueError(f"tau must be a number between 0 and {MAX_TAU:g}, got {value!r}")
    if not (math.isfinite(value) and 0 <= value <= MAX_TAU):
        raise ValueError(f"tau must be between 0 and {MAX_TAU:g}, got {value!r}")
    return float(value)


def check_tau_b(value) -> float:
    """tau_b, the share of tau that Z keeps where B = 1: a finite number (int or float) in [0, 1]."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not (math.isfinite(value) and 0 <= value <= 1):
        raise ValueError(f"tau_b must be a number between 0 and 1, got {value!r}")
    return float(value)


def check_seed(value) -> int:
    """The seed of Z: an integer in [0, 2^63 - 1]; never rounded, never wrapped."""
    return check_int(value, "the seed", 0, MAX_SEED, "2^63 - 1")


def check_bits(value) -> int:
    """k, the bits of B: an integer in [1, MAX_BITS] (2.5 is refused, not rounded)."""
    return check_int(value, "bits", 1, MAX_BITS)


def argument(rule, number=int):
    """A rule of this module as an argparse ``type`` (every CLI's): the text read as ``number``, then checked; a
    refused value exits with 2 and the rule's own message."""

    def parse(text: str):
        try:
            value = number(text)
        except ValueError:
            value = text  # not a number: the rule refuses it, with its message
        try:
            return rule(value)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    parse.__name__ = rule.__name__.removeprefix("check_")
    return parse


def image_format(path) -> str:
    """The Pillow format an output image is written in, from its suffix; other suffixes (or none) are refused."""
    fmt = IMAGE_FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise ValueError(f"cannot tell the image format of {Path(path).name!r}: end the name in one of "
                         f"{', '.join(IMAGE_SUFFIXES)}")
    return fmt


def is_image_file(path: Path) -> bool:
    """An input image by name: one of IMAGE_SUFFIXES, any case."""
    return path.suffix.lower() in IMAGE_FORMATS


PRECISIONS = ("fp32", "bf16")  # inference precisions (bdflow.accel)


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return precision
