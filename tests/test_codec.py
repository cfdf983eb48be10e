"""The .bdf format and the ``python -m bdflow`` CLI: bit-exact round trips, clear errors, a bounded fuzz."""

import json
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bdflow import Rescaler, codec
from bdflow.__main__ import main
from bdflow.codec import CodecError, decode_file, encode_file, pack, read_file, unpack
from bdflow.entropy import decode_codes, encode_codes
from tests.helpers import REPO, tiny_checkpoint


def _tiny(folder: Path, seed: int = 0, boundary: bool = True) -> Path:
    return tiny_checkpoint(folder, boundary=boundary, seed=seed, std=0.02)


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory, tiny_x8) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("codec-ckpt")
    return {"b": tiny_x8, "other": _tiny(root / "tiny-x8-other", seed=1),
            "noB": _tiny(root / "tiny-x8-noB", boundary=False)}


@pytest.fixture(scope="module")
def rescaler(ckpts) -> Rescaler:
    return Rescaler.from_pretrained(ckpts["b"], device="cpu")


@pytest.fixture(scope="module")
def small_bdf(rescaler, odd_face, tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("codec-bdf") / "face.bdf"
    encode_file(rescaler, odd_face, path, bits=2)
    return path.read_bytes()


# ----------------------------------------------------------------------------------------------------
# Entropy coder
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [1, 2, 3, 4])
def test_range_coder_is_exact(bits):
    rng = np.random.default_rng(bits)
    for shape in [(1, 1), (1, 9), (9, 1), (13, 17), (40, 40)]:
        for density in [0.0, 0.05, 0.4, 1.0]:
            codes = ((rng.random(shape) < density) * rng.integers(1, 1 << bits, shape)).astype(np.uint8)
            assert np.array_equal(decode_codes(encode_codes(codes, bits), shape, bits), codes)
    top = np.full((16, 16), (1 << bits) - 1, np.uint8)
    assert np.array_equal(decode_codes(encode_codes(top, bits), top.shape, bits), top)


def test_range_coder_compresses_sparse_maps_and_survives_garbage():
    rng = np.random.default_rng(0)
    codes = np.zeros((64, 64), np.uint8)
    codes[np.arange(64), (np.arange(64) * 0.7).astype(int)] = 1  # a thin line, as boundaries are
    codes[rng.random(codes.shape) < 0.02] = 1
    assert len(encode_codes(codes, 1)) < len(zlib.compress(np.packbits(codes).tobytes(), 9))
    assert encode_codes(np.zeros((64, 64), np.uint8), 1) == b""
    for garbage in [b"", b"\xff" * 7, rng.bytes(50)]:
        out = decode_codes(garbage, (5, 6), 3)
        assert out.shape == (5, 6) and out.max() <= 7


# ----------------------------------------------------------------------------------------------------
# Format round trips
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [1, 2, 3, 4])
def test_file_round_trip_is_bit_exact(rescaler, odd_face, tmp_path, bits):
    enc = rescaler.encode(odd_face, bits=bits)
    bdf = encode_file(rescaler, odd_face, tmp_path / "f.bdf", bits=bits)
    assert np.array_equal(bdf.encoded.y, enc.y) and np.array_equal(bdf.encoded.b, enc.b)
    assert bdf.size == (70, 53) and bdf.padding == (2, 3) and bdf.lr_size == (9, 7) and bdf.bits == bits
    assert bdf.total_bytes == (tmp_path / "f.bdf").stat().st_size
    a = decode_file(rescaler, tmp_path / "f.bdf", tau=1.0, seed=5)
    b = decode_file(rescaler, tmp_path / "f.bdf", tau=1.0, seed=5)
    c = decode_file(rescaler, tmp_path / "f.bdf", tau=1.0, seed=6)
    assert a.size == (53, 70) and np.array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(c))
    assert np.array_equal(np.asarray(a), np.asarray(rescaler.decode(enc, tau=1.0, seed=5)))


@pytest.mark.parametrize("y_codec", [codec.Y_PNG, codec.Y_WEBP])
@pytest.mark.parametrize("b_codec", [codec.B_PACKED, codec.B_RANGE])
def test_every_payload_codec_round_trips(rescaler, odd_face, y_codec, b_codec):
    enc = rescaler.encode(odd_face, bits=3)
    data = pack(enc, "m", "ab" * 32, y_codec=y_codec, b_codec=b_codec)
    bdf = unpack(data)
    assert bdf.y_codec == codec.Y_CODECS[y_codec] and bdf.b_codec == codec.B_CODECS[b_codec]
    assert np.array_equal(bdf.encoded.y, enc.y) and np.array_equal(bdf.encoded.b, enc.b)
    assert bdf.model_name == "m" and bdf.model_digest == "ab" * codec.DIGEST_BYTES


def test_b_less_model(ckpts, odd_face, tmp_path):
    twin = Rescaler.from_pretrained(ckpts["noB"], device="cpu")
    bdf = encode_file(twin, odd_face, tmp_path / "t.bdf", bits=3)
    assert bdf.bits == 0 and bdf.b_codec is None and bdf.b_bytes == 0 and bdf.encoded.b is None
    out = decode_file(twin, tmp_path / "t.bdf", seed=1)
    assert np.array_equal(np.asarray(out), np.asarray(twin.decode(twin.encode(odd_face), seed=1)))


def test_info_and_digest_cache(rescaler, small_bdf):
    info = unpack(small_bdf).info()
    assert info["scale"] == 8 and info["bits"] == 2 and info["size"] == [70, 53] and info["lr_size"] == [9, 7]
    assert info["y_bytes"] + info["b_bytes"] < info["total_bytes"] == len(small_bdf)
    assert info["model_digest"] == codec.model_digest(rescaler)[:16]
    assert rescaler.model._weights_digest == codec.model_digest(rescaler.model) == rescaler.model.weights_digest()
    json.dumps(info)


# ----------------------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------------------


def _with_crc(body: bytes) -> bytes:
    return body + zlib.crc32(body).to_bytes(4, "little")


def test_clear_errors(small_bdf, ckpts, tmp_path):
    body = small_bdf[:-4]
    cases = {
        "bad magic": b"PNG0" + small_bdf[4:],
        "version 9": small_bdf[:4] + b"\x09" + small_bdf[5:],
        "checksum": small_bdf[:-4] + b"\0\0\0\0",
        "unexpected bytes": _with_crc(body + b"\0"),
        "truncated": small_bdf[:5],
        "unknown flags": _with_crc(body[:5] + b"\x03" + body[6:]),
        "scale": _with_crc(body[:6] + b"\x09" + body[7:]),
    }
    for expected, data in cases.items():
        with pytest.raises(CodecError, match=expected):
            unpack(data)
    other = Rescaler.from_pretrained(ckpts["other"], device="cpu")
    (tmp_path / "f.bdf").write_bytes(small_bdf)
    with pytest.raises(CodecError, match=r"wrong model: .*'tiny-x8'.*'tiny-x8-other'"):
        decode_file(other, tmp_path / "f.bdf")
    with pytest.raises(CodecError, match="no such file"):
        read_file(tmp_path / "missing.bdf")


def test_encode_never_overwrites_without_force(rescaler, odd_face, tmp_path):
    out = tmp_path / "f.bdf"
    out.write_bytes(b"keep me")
    with pytest.raises(FileExistsError, match="--force"):
        encode_file(rescaler, odd_face, out)
    assert out.read_bytes() == b"keep me"
    encode_file(rescaler, odd_face, out, force=True)
    assert read_file(out).bits == 1 and not list(tmp_path.glob(".*.tmp"))


def test_fuzz_mutated_and_truncated_files_raise_codec_error(small_bdf):
    """Every truncation and 300 random mutations raise CodecError; 150 mutations with a valid CRC either
    raise CodecError or parse into a consistent file. Bounded in count and time, never anything else."""
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for n in range(len(small_bdf)):
        with pytest.raises(CodecError):
            unpack(small_bdf[:n])

    def mutate(data: bytes) -> bytes:
        b = bytearray(data)
        for _ in range(rng.integers(1, 5)):
            op, i = rng.integers(3), int(rng.integers(len(b)))
            if op == 0:
                b[i] ^= 1 << int(rng.integers(8))
            elif op == 1:
                b[i] = int(rng.integers(256))
            elif len(b) > 1:
                del b[i]
        return bytes(b)

    for _ in range(300):
        data = mutate(small_bdf)
        if data != small_bdf:
            with pytest.raises(CodecError):
                unpack(data)
    parsed = 0
    for _ in range(150):
        data = _with_crc(mutate(small_bdf[:-4]))
        try:
            bdf = unpack(data)
        except CodecError:
            continue
        parsed += 1
        assert bdf.encoded.y.shape == (*bdf.lr_size, 3) and bdf.encoded.b.shape == bdf.lr_size
    assert parsed > 0 and time.perf_counter() - start < 20  # some mutants hit pixel data only


# ----------------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------------


def test_cli_encode_decode_info(ckpts, odd_face, tmp_path, capsys):
    bdf, png = tmp_path / "f.bdf", tmp_path / "f.png"
    model = str(ckpts["b"])
    assert main(["encode", str(odd_face), str(bdf), "--model", model, "--bits", "2"]) == 0
    assert main(["encode", str(odd_face), str(bdf), "--model", model]) == 1  # exists
    assert "--force" in capsys.readouterr().err
    assert main(["decode", str(bdf), str(png), "--seed", "3"]) == 0  # the model is found from the file
    first = np.asarray(Image.open(png))
    assert main(["decode", str(bdf), str(png), "--seed", "3", "--force", "--model", model]) == 0
    assert np.array_equal(first, np.asarray(Image.open(png))) and first.shape == (70, 53, 3)
    assert main(["info", str(bdf), "--json"]) == 0
    info = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert info["bits"] == 2 and info["model_name"] == model
    assert main(["decode", str(bdf), str(tmp_path / "g.png"), "--model", str(ckpts["other"])]) == 1
    assert "wrong model" in capsys.readouterr().err


def test_cli_errors_exit_codes_and_no_tracebacks(ckpts, small_bdf, tmp_path, capsys):
    bad = tmp_path / "bad.bdf"
    bad.write_bytes(small_bdf[: len(small_bdf) // 2])
    assert main(["info", str(bad)]) == 1
    assert main(["decode", str(bad), str(tmp_path / "o.png")]) == 1
    assert main(["decode", str(tmp_path / "missing.bdf"), str(tmp_path / "o.png")]) == 1
    assert main(["encode", str(bad), str(tmp_path / "x.bdf"), "--model", str(ckpts["b"])]) == 1  # not an image
    assert main(["encode", str(bad), str(tmp_path / "x.bdf"), "--model", str(tmp_path / "nope")]) == 1
    lost = tmp_path / "lost.bdf"  # names a model that cannot be found
    lost.write_bytes(pack(unpack(small_bdf).encoded, "no-such-model", "00" * 32))
    assert main(["decode", str(lost), str(tmp_path / "o.png")]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("error:") == 6 and "--model" in err
    assert not (tmp_path / "o.png").exists() and not (tmp_path / "x.bdf").exists()
    for argv in (["encode", "a.png", "b.bdf"], ["encode", "a", "b", "--model", "m", "--bits", "5"], ["frobnicate"],
                 ["decode", "a.bdf", "b.png", "--tau", "nan"]):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 2


def test_cli_folders(ckpts, odd_face, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    for name in ("a", "b"):
        Image.open(odd_face).save(src / f"{name}.png")
    (src / "notes.txt").write_text("not an image")
    assert main(["encode", str(src), str(tmp_path / "enc"), "--model", str(ckpts["b"])]) == 0
    assert sorted(p.name for p in (tmp_path / "enc").iterdir()) == ["a.bdf", "b.bdf"]
    (tmp_path / "enc" / "c.bdf").write_bytes(b"garbage")
    assert main(["decode", str(tmp_path / "enc"), str(tmp_path / "dec")]) == 1  # c fails, a and b are decoded
    assert sorted(p.name for p in (tmp_path / "dec").iterdir()) == ["a.png", "b.png"]
    assert "2 of 3 files done, 1 failed" in capsys.readouterr().out


def test_module_entry_point_help():
    out = subprocess.run([sys.executable, "-m", "bdflow", "--help"], check=False, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0 and "exit codes" in out.stdout and "encode" in out.stdout


@pytest.mark.slow
@pytest.mark.skipif(not (REPO / "checkpoints" / "face-x16" / "config.json").is_file(), reason="no checkpoints/face-x16")
def test_real_checkpoint(face_paths, tmp_path):
    r = Rescaler.from_pretrained(REPO / "checkpoints" / "face-x16", device="cpu")
    bdf = encode_file(r, face_paths[0], tmp_path / "f.bdf", bits=1, model_name="face-x16")
    assert bdf.scale == 16 and bdf.lr_size == (32, 32)
    assert bdf.total_bytes < 3 * 32 * 32 + 32 * 32 // 8  # smaller than raw Y + B
    a, b = (np.asarray(decode_file(r, tmp_path / "f.bdf", seed=0)) for _ in range(2))
    assert a.shape == (512, 512, 3) and np.array_equal(a, b)
