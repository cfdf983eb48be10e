"""The ``.bdf`` file: what bdflow stores for one image, as bytes (byte layout in ``docs/format.md``).

    bdf = encode_file(rescaler, "face.png", "face.bdf", bits=1)   # writes the file, returns its BdfFile
    img = decode_file(rescaler, "face.bdf", tau=0.8, seed=0)      # PIL image, bit-for-bit the same per seed
    info = read_file("face.bdf")                                 # header, sizes and the Encoded (Y, B)

A file holds the 8-bit Y losslessly coded (WebP lossless or PNG, whichever is smaller for that image), the k-bit
B entropy-coded (``bdflow.entropy``, or packed bits if that is smaller), the original size and padding, and the
model that made it (name + a prefix of its weights' SHA-256): decoding with other weights is refused. A CRC-32
closes the file. Every malformed input raises :class:`CodecError` (a ``ValueError``) saying what is wrong.
"""

from __future__ import annotations

import io
import os
import tempfile
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, UnidentifiedImageError

from .config import SCALES
from .encoded import Encoded
from .entropy import decode_codes, encode_codes
from .limits import DEFAULT_MAX_PIXELS, DEFAULT_TAU_B, MAX_BITS, image_format

if TYPE_CHECKING:  # reading and writing files needs no torch (``python -m bdflow info`` stays fast)
    from .pipeline import Rescaler

MAGIC = b"\x89BDF"
VERSION = 1
DIGEST_BYTES = 8  # prefix of the SHA-256 weights digest stored in a file (64 bits)
MAX_NAME_BYTES = 255
MAX_FILE_BYTES = 256 << 20  # refuse to read anything larger: no real .bdf comes near it
ARITH_MAX_CODES = 1 << 20  # the pure-Python range coder is used up to this many B codes (else packed bits)

FLAG_B = 0x01
Y_PNG, Y_WEBP = 0, 1
B_PACKED, B_RANGE = 0, 1
Y_CODECS = {Y_PNG: "png", Y_WEBP: "webp-lossless"}
B_CODECS = {B_PACKED: "packed", B_RANGE: "range-coder"}


class CodecError(ValueError):
    """A .bdf file (or the model asked to decode it) is not what it should be; the message says why."""


@dataclass
class BdfFile:
    """The parsed content of a .bdf file."""

    version: int
    scale: int
    bits: int  # 0 when the file has no B (a B-less model)
    size: tuple[int, int]  # original (height, width)
    padding: tuple[int, int]  # (bottom, right) rows/columns added to reach a multiple of the scale
    model_name: str
    model_digest: str  # hex, DIGEST_BYTES bytes
    y_codec: str
    b_codec: str | None
    y_bytes: int
    b_bytes: int
    total_bytes: int
    encoded: Encoded = field(repr=False)

    @property
    def lr_size(self) -> tuple[int, int]:
        return self.encoded.y.shape[0], self.encoded.y.shape[1]

    def info(self) -> dict:
        """Everything but the pixel data, JSON-ready."""
        h, w = self.size
        d = {k: getattr(self, k) for k in ("version", "scale", "bits", "model_name", "model_digest",
                                            "y_codec", "b_codec", "y_bytes", "b_bytes", "total_bytes")}
        d.update(size=list(self.size), padding=list(self.padding), lr_size=list(self.lr_size),
                 bits_per_pixel=8 * self.total_bytes / (h * w))
        if self.encoded.b is not None:
            d["b_nonzero_fraction"] = float((self.encoded.b > 0).mean())
        return d


# ----------------------------------------------------------------------------------------------------
# Model identity
# ----------------------------------------------------------------------------------------------------


def model_digest(model) -> str:
    """SHA-256 of the weights of a ``Rescaler`` or a ``BDFlow`` (``BDFlow.weights_digest``, cached on the model)."""
    return getattr(model, "model", model).weights_digest()


def check_model(bdf: BdfFile, rescaler: Rescaler, model_label: str | None = None) -> None:
    """Refuse a model other than the one the file was encoded with, naming both."""
    digest = model_digest(rescaler)[: 2 * DIGEST_BYTES]
    label = model_label or rescaler.model.name or "the given model"
    if digest != bdf.model_digest:
        raise CodecError(
            f"wrong model: the file was encoded with {bdf.model_name!r} (weights {bdf.model_digest}), "
            f"but {label!r} has weights {digest}"
        )
    if bdf.scale != rescaler.scale or (bdf.bits > 0) != rescaler.has_boundary:  # same weights imply these; belt and braces
        raise CodecError(f"the file (x{bdf.scale}, bits {bdf.bits}) does not fit model {label!r} (x{rescaler.scale})")


# ----------------------------------------------------------------------------------------------------
# Y and B payloads
# ----------------------------------------------------------------------------------------------------


SMALL_Y_PIXELS = 32 * 32  # up to this LR size, WebP lossless at full effort is also tried (docs/format.md)


def _save(y: np.ndarray, codec: int, effort: int = 0) -> bytes:
    buf = io.BytesIO()
    img = Image.fromarray(y, "RGB")
    if codec == Y_PNG:
        img.save(buf, "PNG", optimize=True)
    else:
        # lossless WebP: Pillow's "quality" is the effort. Measured (docs/format.md): method 6 at quality 0 is the
        # smallest for 32^2..64^2 LRs and ~20x faster than 100; at 16^2, quality 100 is ~23 % smaller.
        img.save(buf, "WEBP", lossless=True, quality=effort, method=6, exact=True)
    return buf.getvalue()


def code_y(y: np.ndarray, codec: int | None = None) -> tuple[int, bytes]:
    """uint8 (h, w, 3) -> (codec id, bytes): the smallest of PNG and WebP lossless unless ``codec`` is given."""
    tries = [(Y_WEBP, 0), (Y_PNG, 0)]
    if y.shape[0] * y.shape[1] <= SMALL_Y_PIXELS:
        tries.append((Y_WEBP, 100))
    best = None
    for c, effort in tries:
        if codec is not None and c != codec:
            continue
        data = _save(y, c, effort)
        if best is None or len(data) < len(best[1]):
            best = (c, data)
    if not np.array_equal(decode_y(best[1], best[0], y.shape[:2]), y):  # never store a lossy Y
        raise RuntimeError(f"{Y_CODECS[best[0]]} did not round-trip Y exactly")
    return best


def decode_y(data: bytes, codec: int, shape: tuple[int, int]) -> np.ndarray:
    fmt = {Y_PNG: "PNG", Y_WEBP: "WEBP"}.get(codec)
    if fmt is None:
        raise CodecError(f"unknown Y codec {codec}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = Image.open(io.BytesIO(data), formats=[fmt])
            if img.size != (shape[1], shape[0]):
                raise CodecError(f"Y is {img.size[0]}x{img.size[1]}, the header says {shape[1]}x{shape[0]}")
            img.load()
    except CodecError:
        raise
    except UnidentifiedImageError:
        raise CodecError(f"Y is not a {Y_CODECS[codec]} image") from None
    except Exception as err:  # Pillow reports corrupt data with many exception types
        raise CodecError(f"Y ({Y_CODECS[codec]}) is corrupt: {err}") from err
    if img.mode != "RGB":
        raise CodecError(f"Y must be RGB, the file holds {img.mode}")
    return np.asarray(img, dtype=np.uint8)


def _pack_codes(codes: np.ndarray, bits: int) -> bytes:
    shifts = np.arange(bits - 1, -1, -1, dtype=np.uint8)
    return np.packbits((codes.reshape(-1, 1) >> shifts) & 1).tobytes()


def _unpack_codes(data: bytes, shape: tuple[int, int], bits: int) -> np.ndarray:
    n = shape[0] * shape[1]
    if len(data) != -(-n * bits // 8):
        raise CodecError(f"packed B holds {len(data)} bytes, {-(-n * bits // 8)} expected")
    flat = np.unpackbits(np.frombuffer(data, np.uint8), count=n * bits).reshape(n, bits)
    return (flat @ (1 << np.arange(bits - 1, -1, -1))).astype(np.uint8).reshape(shape)


def code_b(codes: np.ndarray, bits: int, codec: int | None = None) -> tuple[int, bytes]:
    """k-bit codes (h, w) -> (codec id, bytes): the range coder unless packed bits are smaller (or it is too big)."""
    candidates = {B_PACKED: _pack_codes(codes, bits)}
    if codec in (None, B_RANGE) and (codec == B_RANGE or codes.size <= ARITH_MAX_CODES):
        candidates[B_RANGE] = encode_codes(codes, bits)
    if codec is not None:
        return codec, candidates[codec]
    return min(candidates.items(), key=lambda kv: (len(kv[1]), -kv[0]))


def decode_b(data: bytes, codec: int, shape: tuple[int, int], bits: int) -> np.ndarray:
    if codec == B_PACKED:
        codes = _unpack_codes(data, shape, bits)
    elif codec == B_RANGE:
        if shape[0] * shape[1] > ARITH_MAX_CODES:  # the encoder never writes this: bound the decoder's work
            raise CodecError(f"range-coded B of {shape[0] * shape[1]:,} codes exceeds {ARITH_MAX_CODES:,}")
        codes = decode_codes(data, shape, bits)
    else:
        raise CodecError(f"unknown B codec {codec}")
    if int(codes.max(initial=0)) >= 1 << bits:
        raise CodecError(f"B holds codes above {(1 << bits) - 1}")
    return codes


# ----------------------------------------------------------------------------------------------------
# The container
# ----------------------------------------------------------------------------------------------------


def _uvarint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise CodecError(f"file ends inside {what}")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u8(self, what: str) -> int:
        return self.take(1, what)[0]

    def uvarint(self, what: str, max_bytes: int = 5) -> int:
        n = 0
        for i in range(max_bytes):
            byte = self.u8(what)
            n |= (byte & 0x7F) << (7 * i)
            if not byte & 0x80:
                if byte == 0 and i:
                    raise CodecError(f"{what} is not minimally encoded")
                return n
        raise CodecError(f"{what} is too large")


def pack(enc: Encoded, model_name: str, digest: str, y_codec: int | None = None, b_codec: int | None = None) -> bytes:
    """An Encoded (from ``Rescaler.encode``) + the model's name and weights digest -> the bytes of a .bdf file."""
    scale = int(enc.meta["scale"])
    h, w = (int(v) for v in enc.meta["size"])
    ph, pw = (int(v) for v in enc.meta["padded"])
    if scale not in SCALES or ph != -(-h // scale) * scale or pw != -(-w // scale) * scale:
        raise ValueError(f"inconsistent Encoded meta: scale {scale}, size {h}x{w}, padded {ph}x{pw}")
    y = np.ascontiguousarray(enc.y, dtype=np.uint8)
    if y.shape != (ph // scale, pw // scale, 3):
        raise ValueError(f"Encoded.y is {y.shape}, expected {(ph // scale, pw // scale, 3)}")
    name = model_name.encode()
    if len(name) > MAX_NAME_BYTES:
        raise ValueError(f"model name {model_name!r} is longer than {MAX_NAME_BYTES} bytes")
    digest_bytes = bytes.fromhex(digest)[:DIGEST_BYTES]
    if len(digest_bytes) != DIGEST_BYTES:
        raise ValueError(f"the model digest must have at least {2 * DIGEST_BYTES} hex digits, got {digest!r}")
    has_b = enc.b is not None
    bits = int(enc.bits) if has_b else 0
    out = bytearray(MAGIC)
    out += bytes([VERSION, FLAG_B if has_b else 0, scale.bit_length() - 1, bits])
    out += _uvarint(h) + _uvarint(w) + bytes([ph - h, pw - w])
    out += bytes([len(name)]) + name + digest_bytes
    yc, ydata = code_y(y, y_codec)
    out += bytes([yc]) + _uvarint(len(ydata)) + ydata
    if has_b:
        codes = np.asarray(enc.b, dtype=np.uint8)
        if codes.shape != y.shape[:2] or int(codes.max(initial=0)) >= 1 << bits:
            raise ValueError(f"Encoded.b must be {bits}-bit codes shaped {y.shape[:2]}")
        bc, bdata = code_b(codes, bits, b_codec)
        out += bytes([bc]) + _uvarint(len(bdata)) + bdata
    out += zlib.crc32(out).to_bytes(4, "little")
    return bytes(out)


def unpack(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> BdfFile:
    """The bytes of a .bdf file -> BdfFile (header + Encoded). Raises CodecError on anything malformed."""
    data = bytes(data)
    if not data.startswith(MAGIC):
        raise CodecError("file is truncated (empty)" if not data else "not a bdflow file (bad magic bytes)")
    if len(data) > len(MAGIC) and data[len(MAGIC)] != VERSION:
        raise CodecError(f"unsupported .bdf version {data[len(MAGIC)]} (this bdflow reads version {VERSION})")
    if len(data) < len(MAGIC) + 9:
        raise CodecError("file is truncated")
    if zlib.crc32(data[:-4]) != int.from_bytes(data[-4:], "little"):
        raise CodecError("checksum mismatch: the file is truncated or corrupt")
    r = _Reader(data[:-4])
    r.take(len(MAGIC) + 1, "header")
    flags = r.u8("flags")
    if flags & ~FLAG_B:
        raise CodecError(f"unknown flags 0x{flags:02x}")
    has_b = bool(flags & FLAG_B)
    log_scale = r.u8("scale")
    scale = 1 << log_scale if log_scale < 8 else 0
    if scale not in SCALES:
        raise CodecError(f"unsupported scale 2^{log_scale}")
    bits = r.u8("bits")
    if has_b and not 1 <= bits <= MAX_BITS or not has_b and bits:
        raise CodecError(f"bits {bits} is invalid for a file {'with' if has_b else 'without'} B")
    h, w = r.uvarint("height"), r.uvarint("width")
    if not (scale <= h and scale <= w) or h * w > max_pixels:
        raise CodecError(f"image size {w}x{h} is invalid at x{scale} (at most {max_pixels:,} pixels)")
    pad = (r.u8("padding"), r.u8("padding"))
    if pad != (-h % scale, -w % scale):
        raise CodecError(f"padding {pad} does not fit size {w}x{h} at x{scale}")
    lr = ((h + pad[0]) // scale, (w + pad[1]) // scale)
    try:
        name = r.take(r.u8("model name"), "model name").decode()
    except UnicodeDecodeError as err:
        raise CodecError("the model name is not UTF-8") from err
    digest = r.take(DIGEST_BYTES, "model digest").hex()
    y_codec = r.u8("Y codec")
    y_data = r.take(r.uvarint("Y length"), "Y")
    y = decode_y(y_data, y_codec, lr)
    codes, b_codec, b_data = None, None, b""
    if has_b:
        b_codec = r.u8("B codec")
        b_data = r.take(r.uvarint("B length"), "B")
        codes = decode_b(b_data, b_codec, lr, bits)
    if r.pos != len(r.data):
        raise CodecError(f"{len(r.data) - r.pos} unexpected bytes after the payload")
    meta = {"kind": "pil", "dtype": "uint8", "notes": [], "scale": scale, "size": [h, w],
            "padded": [h + pad[0], w + pad[1]], "model": name}
    enc = Encoded(y=y, b=codes, bits=bits or 1, meta=meta)
    return BdfFile(VERSION, scale, bits, (h, w), pad, name, digest, Y_CODECS[y_codec],
                   None if b_codec is None else B_CODECS[b_codec], len(y_data), len(b_data), len(data), enc)


# ----------------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------------


def read_file(path, max_pixels: int = DEFAULT_MAX_PIXELS) -> BdfFile:
    path = Path(path)
    if not path.is_file():
        raise CodecError(f"no such file: {path}")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise CodecError(f"{path.name} is {path.stat().st_size:,} bytes, too large for a .bdf file")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise CodecError(f"cannot read {path}: {err}") from err
    try:
        return unpack(data, max_pixels)
    except CodecError as err:
        raise CodecError(f"{path.name}: {err}") from None


def _new_file_mode(path: Path) -> int:
    """The mode a plain ``open(path, "w")`` would give: an overwritten file keeps its own, a new one 0666 & ~umask."""
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)  # reading the umask means setting it: put it straight back
        os.umask(umask)
        return 0o666 & ~umask


def check_output(path, force: bool = False) -> Path:
    """``path`` as an output file, refused with a clear message when it exists (without ``force``), is a folder,
    or lies under a file (face.jpg/x.bdf): before any slow work."""
    path = Path(path)
    if path.exists() and not force:
        raise FileExistsError(f"{path} exists (use --force to overwrite)")
    if path.is_dir():
        raise FileExistsError(f"{path} is a folder")
    blocking = next((p for p in path.parents if p.exists()), None)
    if blocking is not None and not blocking.is_dir():
        raise CodecError(f"cannot write {path}: {blocking} is a file, not a folder")
    return path


def write_atomic(path, data: bytes | None = None, image: Image.Image | None = None, force: bool = False) -> Path:
    """Write bytes (or save a PIL image in the format its suffix names) via a temporary file in the same folder,
    flushed to disk, then renamed: readers see the old file or the new one, never a part. Never overwrites
    without force; the file gets the usual permissions (mkstemp's 0600 is not kept)."""
    path = check_output(path, force)
    fmt = image_format(path) if image is not None else None
    try:  # the message names the output, never the temporary file
        path.parent.mkdir(parents=True, exist_ok=True)
        mode = _new_file_mode(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise CodecError(f"cannot write {path}: {err.strerror or err}") from None
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            if image is not None:
                image.save(f, fmt)
            else:
                f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise CodecError(f"cannot write {path}: {err.strerror or err}") from None
        raise
    return path


def encode_file(rescaler: Rescaler, src, dst, bits: int = 1, model_name: str | None = None, force: bool = False) -> BdfFile:
    """Image file -> .bdf file. Returns the written file's BdfFile (parsed back, so what is returned was checked)."""
    dst = check_output(dst, force)  # before the (slow) encode
    enc = rescaler.encode(src, bits=bits)
    name = model_name or rescaler.model.name or "bdflow"
    data = pack(enc, name, model_digest(rescaler))
    bdf = unpack(data, max(rescaler.max_pixels, DEFAULT_MAX_PIXELS))
    write_atomic(dst, data, force=force)
    return bdf


def decode_file(rescaler: Rescaler, src, tau: float | None = None, seed: int | None = 0,
                model_label: str | None = None, tau_b: float = DEFAULT_TAU_B) -> Image.Image:
    """.bdf file -> PIL image of the original size (tau=None: the model's default; tau_b: Rescaler.decode's); refuses
    a model whose weights differ from the encoder's."""
    bdf = src if isinstance(src, BdfFile) else read_file(src, max(rescaler.max_pixels, DEFAULT_MAX_PIXELS))
    check_model(bdf, rescaler, model_label)
    return rescaler.decode(bdf.encoded, tau=tau, seed=seed, tau_b=tau_b)
