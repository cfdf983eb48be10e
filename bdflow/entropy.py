"""A small exact entropy coder for B: an adaptive binary range coder with a 2-D context model.

B is a k-bit code map on the LR grid, mostly zeros with thin runs of boundary codes. Each code is sent as a
"non-zero?" decision whose probability is conditioned on which of six causal neighbours (W, N, NW, NE, WW, NN)
are non-zero (64 contexts), then, when non-zero and k > 1, its value - 1 as k binary decisions down a tree whose
probabilities are conditioned on max(W, N). Probabilities are 11-bit integers adapted by a shift of 5, and the
range coder is LZMA's (32-bit range, carry propagation through a cached byte), so encoder and decoder agree
exactly on every platform. The always-zero first byte of LZMA's stream is not written, and trailing zero bytes
are dropped (the decoder reads zeros past the end), which matters when B is a few dozen bytes.

The decoder does a bounded amount of work: exactly h * w codes, at most k + 1 decisions each, whatever the input.
"""

from __future__ import annotations

import numpy as np

PROB_BITS = 11
PROB_ONE = 1 << PROB_BITS
PROB_INIT = PROB_ONE // 2
ADAPT = 5
TOP = 1 << 24
MASK32 = 0xFFFFFFFF
NZ_CONTEXTS = 64


class _Encoder:
    def __init__(self):
        self.low, self.range, self.cache, self.cache_size = 0, MASK32, 0, 1
        self.out = bytearray()

    def bit(self, probs: list[int], i: int, bit: int) -> None:
        p = probs[i]
        bound = (self.range >> PROB_BITS) * p
        if bit:
            self.low += bound
            self.range -= bound
            probs[i] = p - (p >> ADAPT)
        else:
            self.range = bound
            probs[i] = p + ((PROB_ONE - p) >> ADAPT)
        while self.range < TOP:
            self.range = (self.range << 8) & MASK32
            self._shift_low()

    def _shift_low(self) -> None:
        if self.low < 0xFF000000 or self.low > MASK32:
            carry = self.low >> 32
            temp = self.cache
            while True:
                self.out.append((temp + carry) & 0xFF)
                temp = 0xFF
                self.cache_size -= 1
                if not self.cache_size:
                    break
            self.cache = (self.low >> 24) & 0xFF
        self.cache_size += 1
        self.low = (self.low << 8) & MASK32

    def finish(self) -> bytes:
        for _ in range(5):
            self._shift_low()
        return bytes(self.out[1:]).rstrip(b"\0")  # LZMA's first byte is always 0; the decoder pads with zeros


class _Decoder:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 4
        self.range = MASK32
        self.code = int.from_bytes(data[:4].ljust(4, b"\0"), "big")

    def bit(self, probs: list[int], i: int) -> int:
        p = probs[i]
        bound = (self.range >> PROB_BITS) * p
        if self.code < bound:
            self.range = bound
            probs[i] = p + ((PROB_ONE - p) >> ADAPT)
            bit = 0
        else:
            self.code -= bound
            self.range -= bound
            probs[i] = p - (p >> ADAPT)
            bit = 1
        while self.range < TOP:
            self.range = (self.range << 8) & MASK32
            byte = self.data[self.pos] if self.pos < len(self.data) else 0
            self.pos += 1
            self.code = ((self.code << 8) | byte) & MASK32
        return bit


def _nz_context(rows: list[list[int]], y: int, x: int) -> int:
    """Which causal neighbours are non-zero; rows are padded by 2 on top and left, 1 on the right."""
    up, up2, row = rows[y + 1], rows[y], rows[y + 2]
    x2 = x + 2
    return (
        (row[x2 - 1] > 0)
        | (up[x2] > 0) << 1
        | (up[x2 - 1] > 0) << 2
        | (up[x2 + 1] > 0) << 3
        | (row[x2 - 2] > 0) << 4
        | (up2[x2] > 0) << 5
    )


def encode_codes(codes: np.ndarray, bits: int) -> bytes:
    """k-bit codes (h, w) uint8 -> bytes. Inverse of :func:`decode_codes`."""
    codes = np.asarray(codes)
    if codes.ndim != 2 or codes.size == 0:
        raise ValueError(f"codes must be a non-empty 2-D array, got shape {codes.shape}")
    top = (1 << bits) - 1
    if int(codes.max()) > top or int(codes.min()) < 0:
        raise ValueError(f"codes must lie in 0..{top} for {bits} bits")
    h, w = codes.shape
    rows = [[0] * (w + 3) for _ in range(h + 2)]
    nz, val = [PROB_INIT] * NZ_CONTEXTS, [PROB_INIT] * ((top + 1) << bits)
    enc = _Encoder()
    for y in range(h):
        row, up = rows[y + 2], rows[y + 1]
        src = codes[y].tolist()
        for x in range(w):
            v = src[x]
            enc.bit(nz, _nz_context(rows, y, x), v > 0)
            if v and bits > 1:
                base, node = max(row[x + 1], up[x + 2]) << bits, 1
                for shift in range(bits - 1, -1, -1):
                    b = ((v - 1) >> shift) & 1
                    enc.bit(val, base + node, b)
                    node = (node << 1) | b
            row[x + 2] = v
    return enc.finish()


def decode_codes(data: bytes, shape: tuple[int, int], bits: int) -> np.ndarray:
    """bytes -> k-bit codes (h, w) uint8. Any input decodes to *some* map of that shape: the caller checks integrity."""
    h, w = shape
    top = (1 << bits) - 1
    rows = [[0] * (w + 3) for _ in range(h + 2)]
    nz, val = [PROB_INIT] * NZ_CONTEXTS, [PROB_INIT] * ((top + 1) << bits)
    dec = _Decoder(bytes(data))
    for y in range(h):
        row, up = rows[y + 2], rows[y + 1]
        for x in range(w):
            v = dec.bit(nz, _nz_context(rows, y, x))
            if v and bits > 1:
                base, node = max(row[x + 1], up[x + 2]) << bits, 1
                for _ in range(bits):
                    node = (node << 1) | dec.bit(val, base + node)
                v = min(node - (1 << bits) + 1, top)  # value - 1 was sent; a corrupt stream may ask for top + 1
            row[x + 2] = v
    return np.array([r[2 : w + 2] for r in rows[2:]], dtype=np.uint8).reshape(h, w)
