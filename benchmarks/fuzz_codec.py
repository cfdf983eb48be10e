"""The .bdf reader under 10,000 mutated or truncated files (a benchmark that prints figures, not a test).

    python benchmarks/fuzz_codec.py                      # 10,000 files, 2 workers, 10 s and 1 GiB per file
    python benchmarks/fuzz_codec.py --files 2000 --workers 1 --seed 3

Base files: real faces and a church (assets/, ../shared/data) encoded with the shipped checkpoints (x8, x16, x16
without B) at bits 1..4, with each Y codec (WebP lossless, PNG) and each B codec (range coder, packed bits).
Mutations, half of them with the CRC-32 recomputed so that they get past the checksum into the parser and the
payload decoders: truncation, bit flips, overwritten bytes, inserted/deleted/duplicated ranges, splices from
another base file, garbage appended, and edits of one header or length field (flags, scale, bits, height, width,
padding, name length, codec ids, Y/B lengths) to boundary values (0, 1, 127, 128, 255, max varint, ±1).

Each file is read by ``bdflow.codec.read_file`` (container, Y image, B range decoder: everything that touches
untrusted bytes) in a worker process with an address-space limit and a wall-clock limit per file; a worker that
dies or overruns is counted as a crash or a hang and replaced. A file that parses is checked for consistency
(Y and B shapes match the header). Prints the outcomes by error message, crashes, hangs, the time per file
(p50/p95/p99/max), the peak traced memory per file and the workers' peak RSS.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import re
import resource
import signal
import sys
import tempfile
import time
import tracemalloc
import zlib
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bdflow import codec  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
BOUNDARY_VALUES = (0, 1, 2, 127, 128, 255)


# ----------------------------------------------------------------------------------------------------
# Base files and their fields
# ----------------------------------------------------------------------------------------------------


def base_files() -> list[bytes]:
    """Real .bdf files: a few images x shipped checkpoints x bits x payload codecs (needs torch, once)."""
    from PIL import Image

    from bdflow.pipeline import Rescaler

    images = [ROOT / "assets" / "face-female-015248.jpg", ROOT / "assets" / "church.jpg",
              *sorted((DATA / "faces" / "val").glob("*.jpg"))[:2]]
    out = []
    for name in ("face-x8", "face-x16", "face-x16-noB"):
        r = Rescaler.from_pretrained(ROOT / "checkpoints" / name, device="cpu")
        digest = codec.model_digest(r)
        for i, path in enumerate(images):
            img = Image.open(path).convert("RGB")
            if i % 2:  # an odd size: padding in the header
                img = img.resize((img.width * 3 // 5 + 3, img.height * 3 // 5 + 1))
            for bits in (1, 2, 3, 4) if r.has_boundary else (1,):
                enc = r.encode(img, bits=bits)
                for y_codec in (codec.Y_WEBP, codec.Y_PNG):
                    for b_codec in (codec.B_RANGE, codec.B_PACKED) if r.has_boundary else (None,):
                        out.append(codec.pack(enc, name, digest, y_codec=y_codec, b_codec=b_codec))
    return out


def fields(data: bytes) -> dict[str, tuple[int, int]]:
    """Header and length fields of a valid .bdf file: name -> (offset, length in bytes) (docs/format.md)."""
    pos, out = len(codec.MAGIC), {}

    def take(name: str, n: int) -> None:
        nonlocal pos
        out[name] = (pos, n)
        pos += n

    def varint(name: str) -> int:
        n = 0
        while data[pos + n] & 0x80:
            n += 1
        value = _varint_value(data, pos)
        take(name, n + 1)
        return value

    for name in ("version", "flags", "scale", "bits"):
        take(name, 1)
    varint("height"), varint("width")
    take("pad_bottom", 1), take("pad_right", 1)
    name_len = data[pos]
    take("name_length", 1), take("name", name_len), take("digest", codec.DIGEST_BYTES), take("y_codec", 1)
    take("y", varint("y_length"))
    if data[len(codec.MAGIC) + 1] & codec.FLAG_B:
        take("b_codec", 1)
        take("b", varint("b_length"))
    return out


# ----------------------------------------------------------------------------------------------------
# Mutations
# ----------------------------------------------------------------------------------------------------


def with_crc(body: bytes) -> bytes:
    return body + zlib.crc32(body).to_bytes(4, "little")


def mutate(rng: np.random.Generator, bases: list[bytes]) -> tuple[str, bytes]:
    """(kind, mutated bytes) of a random base file; kinds ending in '+crc' carry a recomputed CRC."""
    data = bases[rng.integers(len(bases))]
    fix_crc = bool(rng.integers(2))
    body = bytearray(data[:-4] if fix_crc else data)
    n = len(body)
    kind = ["truncate", "bitflip", "overwrite", "insert", "delete", "duplicate", "splice", "append", "field"][
        rng.integers(9)]
    if kind == "truncate":
        body = body[: rng.integers(n)]
    elif kind == "bitflip":
        for _ in range(rng.integers(1, 9)):
            i = rng.integers(n)
            body[i] ^= 1 << int(rng.integers(8))
    elif kind == "overwrite":
        i = rng.integers(n)
        body[i : i + int(rng.integers(1, 17))] = rng.integers(0, 256, int(rng.integers(1, 17)), dtype=np.uint8).tobytes()
    elif kind == "insert":
        i = rng.integers(n + 1)
        body[i:i] = rng.integers(0, 256, int(rng.integers(1, 65)), dtype=np.uint8).tobytes()
    elif kind == "delete":
        i = rng.integers(n)
        del body[i : i + int(rng.integers(1, 65))]
    elif kind == "duplicate":
        i = rng.integers(n)
        chunk = body[i : i + int(rng.integers(1, 257))]
        body[i:i] = chunk
    elif kind == "splice":  # the start of this file, the rest of another one (or a range of it)
        other = bases[rng.integers(len(bases))]
        i, j = rng.integers(n), rng.integers(len(other))
        body = body[:i] + other[j : j + int(rng.integers(1, len(other) + 1))]
    elif kind == "append":
        body += rng.integers(0, 256, int(rng.integers(1, 129)), dtype=np.uint8).tobytes()
    else:  # one header or length field set to a boundary value, +-1, or a random one
        layout = fields(data)
        editable = [k for k in layout if k not in ("y", "b", "name", "digest")]
        name = editable[rng.integers(len(editable))]
        offset, length = layout[name]
        old = int.from_bytes(bytes(body[offset : offset + length]), "little")
        choice = rng.integers(4)
        if name in ("height", "width", "y_length", "b_length"):  # varints: a value, re-encoded (the length may change)
            value = [int(rng.choice(BOUNDARY_VALUES)), _varint_value(data, offset) + int(rng.choice((-1, 1))),
                     2**35 - 1, int(rng.integers(1 << 24))][choice]
            new = codec._uvarint(max(value, 0)) if choice != 2 else b"\xff\xff\xff\xff\x7f"
        else:
            value = [int(rng.choice(BOUNDARY_VALUES)), (old + int(rng.choice((-1, 1)))) % 256, 255, int(rng.integers(256))][choice]
            new = bytes([value])
        body[offset : offset + length] = new
        kind = f"field:{name}"
    return kind + ("+crc" if fix_crc else ""), bytes(with_crc(bytes(body)) if fix_crc else body)


def _varint_value(data: bytes, offset: int) -> int:
    value, shift = 0, 0
    while True:
        byte = data[offset]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value
        offset, shift = offset + 1, shift + 7


# ----------------------------------------------------------------------------------------------------
# Workers: one file at a time, with limits
# ----------------------------------------------------------------------------------------------------


def _alarm(signum, frame):
    raise TimeoutError


def worker(conn, memory_bytes: int, seconds: float) -> None:
    """A fresh process (spawned: no torch) reading the files it is sent, under an address-space limit."""
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    signal.signal(signal.SIGALRM, _alarm)
    tracemalloc.start()
    while True:
        path = conn.recv()
        if path is None:
            return
        tracemalloc.reset_peak()
        t0 = time.perf_counter()
        signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            bdf = codec.read_file(path)
            ok = bdf.encoded.y.shape == (*bdf.lr_size, 3) and (bdf.encoded.b is None or bdf.encoded.b.shape == bdf.lr_size)
            outcome = "parsed (consistent)" if ok else "parsed INCONSISTENT"
        except codec.CodecError as err:
            outcome = "CodecError: " + normalise(str(err))
        except TimeoutError:
            outcome = "HANG"
        except MemoryError:
            outcome = "CRASH MemoryError"
        except Exception as err:  # anything else is a crash of the reader
            outcome = f"CRASH {type(err).__name__}: {err}"
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        seconds_taken = time.perf_counter() - t0
        conn.send((outcome, seconds_taken, tracemalloc.get_traced_memory()[1],
                   resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024))


def normalise(message: str) -> str:
    """Group messages: the file name prefix dropped, numbers and hex digests replaced by N."""
    message = re.sub(r"^[^:]*\.bdf: ", "", message)
    message = re.sub(r"\b(0x)?[0-9a-f]{16}\b|\b0x[0-9a-f]+\b", "HEX", message)
    return re.sub(r"\d[\d,]*", "N", message)[:110]


class Worker:
    def __init__(self, memory_bytes: int, seconds: float):
        self.memory_bytes, self.seconds = memory_bytes, seconds
        self.start()

    def start(self) -> None:
        self.conn, child = mp.Pipe()
        self.proc = mp.get_context("spawn").Process(target=worker, args=(child, self.memory_bytes, self.seconds), daemon=True)
        self.proc.start()

    def run(self, path: str):
        """(outcome, seconds, traced peak bytes, worker max RSS) of one file; a dead or stuck worker is replaced."""
        t0 = time.perf_counter()
        self.conn.send(path)
        if self.conn.poll(self.seconds + 5):
            try:
                return self.conn.recv()
            except EOFError:
                pass
        died = not self.proc.is_alive()
        self.proc.kill()
        self.proc.join()
        code = self.proc.exitcode
        self.start()
        return ("CRASH worker died (exit %s)" % code if died else "HANG (killed)"), time.perf_counter() - t0, 0, 0

    def close(self) -> None:
        self.conn.send(None)
        self.proc.join(5)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--files", type=int, default=10_000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seconds", type=float, default=10.0, help="wall-clock limit per file")
    p.add_argument("--memory-mib", type=int, default=1024, help="address-space limit of a worker")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    t0 = time.time()
    bases = base_files()
    for data in bases:  # the base files are valid, and fields() understands them
        codec.unpack(data)
        assert fields(data)["y"][1] > 0
    rng = np.random.default_rng(args.seed)
    kinds: Counter = Counter()
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i in range(args.files):
            kind, data = mutate(rng, bases)
            kinds[kind.split(":")[0].replace("+crc", "") + ("+crc" if kind.endswith("+crc") else "")] += 1
            path = Path(tmp) / f"{i:05d}.bdf"
            path.write_bytes(data)
            paths.append(str(path))
        print(f"{len(bases)} base files ({min(map(len, bases))}-{max(map(len, bases))} bytes), {args.files} mutants "
              f"written in {time.time() - t0:.0f} s; limits per file: {args.seconds:g} s, {args.memory_mib} MiB address space")
        print("mutations: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))
        results = run_all(paths, args)
    outcomes = Counter(r[0] for r in results)
    times = np.array([r[1] for r in results]) * 1000
    traced = np.array([r[2] for r in results]) / 2**20
    crashes = sum(v for k, v in outcomes.items() if k.startswith("CRASH") or "INCONSISTENT" in k)
    hangs = sum(v for k, v in outcomes.items() if k.startswith("HANG"))
    print(f"\noutcomes of {len(results)} files:")
    for message, count in outcomes.most_common():
        print(f"  {count:6d}  {message}")
    print(f"\ncrashes: {crashes}   hangs: {hangs}   parsed: {outcomes['parsed (consistent)']}   "
          f"clear CodecError: {sum(v for k, v in outcomes.items() if k.startswith('CodecError'))}")
    print("time per file (ms): p50 {:.2f}  p95 {:.2f}  p99 {:.2f}  max {:.1f}".format(*np.percentile(times, [50, 95, 99, 100])))
    print("peak traced memory per file (MiB): p50 {:.2f}  p99 {:.2f}  max {:.2f};  workers' peak RSS {:.0f} MiB".format(
        *np.percentile(traced, [50, 99, 100]), max(r[3] for r in results) / 2**20))
    print(f"total {time.time() - t0:.0f} s")
    return 1 if crashes or hangs else 0


def run_all(paths: list[str], args) -> list[tuple]:
    """Read every file in --workers workers (threads feed them; each worker handles one file at a time)."""
    import threading

    results: list[tuple] = [None] * len(paths)
    lock, index = threading.Lock(), iter(range(len(paths)))

    def feed():
        w = Worker(args.memory_mib << 20, args.seconds)
        while True:
            with lock:
                i = next(index, None)
            if i is None:
                break
            results[i] = w.run(paths[i])
        w.close()

    threads = [threading.Thread(target=feed) for _ in range(args.workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
