"""``bdflow encode | decode | info`` (or ``python -m bdflow ...``): the .bdf file format on the command line
(docs/format.md). Torch is imported only when a model runs: ``info`` and argument errors stay fast."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .codec import CodecError, decode_file, encode_file, read_file, write_atomic
from .limits import (BDF_SUFFIX, DEFAULT_TAU_B, IMAGE_SUFFIXES, MAX_BITS, PRECISIONS, argument, check_bits, check_seed,
                     check_tau, check_tau_b, image_format)

EXIT_OK, EXIT_BAD_INPUT, EXIT_USAGE = 0, 1, 2

EPILOG = f"""\
exit codes:
  {EXIT_OK}  success
  {EXIT_BAD_INPUT}  bad input: unreadable image, truncated/corrupt/wrong-version .bdf, wrong or missing model,
     output exists without --force (with a folder, the others are still processed)
  {EXIT_USAGE}  usage error (bad arguments)

examples (`bdflow` after `pip install -e .`; `python -m bdflow` is the same):
  bdflow encode face.png face.bdf --model face-x16 --bits 1
  bdflow decode face.bdf face_out.png --tau 0.8 --seed 0
  bdflow info face.bdf
  bdflow encode photos/ encoded/ --model checkpoints/face-x16     # a folder: one .bdf per image
"""


class Models:
    """Load each model once per run (a folder of files may name the same model many times)."""

    def __init__(self, device: str | None, precision: str = "fp32"):
        self.device, self.precision, self.cache = device, precision, {}

    def get(self, name: str):
        """The Rescaler of a checkpoint name (``hub.find_checkpoint``; torch is imported here, on the first model)."""
        from .accel import keep_freed_memory
        from .hub import find_checkpoint
        from .pipeline import Rescaler

        if name not in self.cache:
            keep_freed_memory()  # process-wide, once a model runs (bdflow.accel)
            try:
                self.cache[name] = Rescaler.from_pretrained(find_checkpoint(name), device=self.device,
                                                            precision=self.precision)
            except Exception as err:  # folder, config, weights or Hub errors (offline, not found, ...)
                raise CodecError(f"cannot load model {name!r}: {err}") from err
        return self.cache[name]


def _jobs(src: Path, dst: Path, suffixes, out_suffix: str, file_suffixes) -> list[tuple[Path, Path]]:
    """(input, output) pairs of a file or a folder; a folder whose inputs would share an output name (a.png and a.jpg,
    or A.png and a.png on a case-insensitive disk) is refused before any work: outputs never replace each other.
    For a folder, an output that is a file or named like one (a suffix of ``file_suffixes``) is refused rather than
    made a folder."""
    if src.is_dir():
        files = sorted(p for p in src.iterdir() if p.is_file() and p.suffix.lower() in suffixes)
        if not files:
            raise CodecError(f"no {'/'.join(suffixes)} files in {src}")
        if (dst.exists() and not dst.is_dir()) or (not dst.exists() and dst.suffix.lower() in file_suffixes):
            raise CodecError(f"{src} is a folder, so the output {dst} must be a folder too (a name without "
                             f"{dst.suffix}; it is created if missing)")
        by_name: dict[str, list[Path]] = {}
        for p in files:
            by_name.setdefault((p.stem + out_suffix).lower(), []).append(p)
        clashes = [" and ".join(p.name for p in group) + f" -> {group[0].stem}{out_suffix}"
                   for group in by_name.values() if len(group) > 1]
        if clashes:
            raise CodecError(f"files in {src} would share an output name ({'; '.join(clashes)}): rename them; "
                             "nothing was written")
        return [(p, dst / (p.stem + out_suffix)) for p in files]
    if not src.is_file():
        raise CodecError(f"no such file or folder: {src}")
    return [(src, dst / (src.stem + out_suffix) if dst.is_dir() else dst)]


def named(path: Path, err: Exception) -> str:
    """The message of an error about ``path``, naming the file once: bdflow's messages about a file name it
    already ("bad.png is not an image Pillow can read"); others get its path in front."""
    text = str(err)
    return text if path.name in text else f"{path}: {text}"


def _run(jobs, work, desc: str, quiet: bool) -> int:
    failures = 0
    bar = None
    if len(jobs) > 1 and not quiet:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(jobs), desc=desc, unit="file")
    for src, dst in jobs:
        try:
            message = work(src, dst)
            if not quiet and bar is None:
                print(message)
        except (CodecError, ValueError, OSError) as err:
            failures += 1
            (bar.write if bar else print)(f"error: {named(src, err)}", file=sys.stderr)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
        print(f"{len(jobs) - failures} of {len(jobs)} files done" + (f", {failures} failed" if failures else ""))
    return EXIT_BAD_INPUT if failures else EXIT_OK


def cmd_encode(args) -> int:
    jobs = _jobs(args.input, args.output, IMAGE_SUFFIXES, BDF_SUFFIX, (BDF_SUFFIX,))  # before the model loads
    if jobs[0][1].suffix.lower() != BDF_SUFFIX:
        raise CodecError(f"the output {jobs[0][1]} must end in {BDF_SUFFIX}")
    rescaler = Models(args.device, args.precision).get(args.model)
    from .hub import checkpoint_name  # torch is loaded by now

    label = checkpoint_name(args.model)

    def work(src, dst):
        bdf = encode_file(rescaler, src, dst, bits=args.bits, model_name=label, force=args.force)
        h, w = bdf.size
        return f"{src} -> {dst}: {bdf.total_bytes:,} bytes ({8 * bdf.total_bytes / (h * w):.4f} bits/pixel)"

    return _run(jobs, work, "encoding", args.quiet)


def cmd_decode(args) -> int:
    jobs = _jobs(args.input, args.output, (BDF_SUFFIX,), ".png", IMAGE_SUFFIXES)
    image_format(jobs[0][1])  # the format the output's suffix names; refused before any work when there is none
    models = Models(args.device, args.precision)

    def work(src, dst):
        if dst.exists() and not args.force:
            raise FileExistsError(f"{dst} exists (use --force to overwrite)")
        bdf = read_file(src)
        name = args.model or bdf.model_name
        try:
            rescaler = models.get(name)
        except CodecError as err:
            raise CodecError(f"{err}; the file was encoded with {bdf.model_name!r}: pass its folder with --model") from None
        image = decode_file(rescaler, bdf, tau=args.tau, seed=args.seed, model_label=name, tau_b=args.tau_b)
        write_atomic(dst, image=image, force=args.force)
        return f"{src} -> {dst}: {image.size[0]}x{image.size[1]}"

    return _run(jobs, work, "decoding", args.quiet)


def cmd_info(args) -> int:
    status = EXIT_OK
    for path in args.input:
        try:
            info = read_file(path).info()
        except CodecError as err:
            print(f"error: {named(path, err)}", file=sys.stderr)
            status = EXIT_BAD_INPUT
            continue
        if args.json:
            print(json.dumps({"file": str(path), **info}))
            continue
        print(f"{path}: bdflow file version {info['version']}")
        for key, value in info.items():
            if key != "version":
                print(f"  {key:18s} {value}")
    return status


def parser() -> argparse.ArgumentParser:
    prog = "python -m bdflow" if Path(sys.argv[0]).name == "__main__.py" else "bdflow"
    p = argparse.ArgumentParser(prog=prog, description="Store images as .bdf files (8-bit Y + k-bit B) "
                                "and decode them back with the same model.", epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="{encode,decode,info}")
    common = argparse.ArgumentParser(add_help=False)  # the flags encode and decode share (argparse ``parents``)
    common.add_argument("--force", action="store_true", help="overwrite existing outputs")
    common.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    common.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="fp32 (exact, default) or bf16 (subnets in bfloat16: ~2x faster on AVX512-BF16 CPUs)")
    common.add_argument("-q", "--quiet", action="store_true", help="print errors only")

    def command(name: str, help: str, parents=()):
        return sub.add_parser(name, help=help, epilog=EPILOG, parents=list(parents),
                              formatter_class=argparse.RawDescriptionHelpFormatter)

    e = command("encode", "image (or folder of images) -> .bdf", [common])
    e.add_argument("input", type=Path, help="an image file, or a folder of images")
    e.add_argument("output", type=Path, help="the .bdf file, or a folder for IN.bdf files")
    e.add_argument("--model", required=True, help="checkpoint folder, a name found as checkpoints/NAME, or a Hub repo id")
    e.add_argument("--bits", type=argument(check_bits), default=1, metavar="K", help=f"bits of B, 1..{MAX_BITS} (default 1)")
    e.set_defaults(func=cmd_encode)

    d = command("decode", ".bdf (or folder of them) -> image", [common])
    d.add_argument("input", type=Path, help="a .bdf file, or a folder of them")
    d.add_argument("output", type=Path, help="the image (format from the suffix, PNG for a folder), or a folder")
    d.add_argument("--model", help="the model (default: the one named in the file, found as a folder, "
                   "checkpoints/NAME or a cached Hub repo); its weights must match the file's")
    d.add_argument("--tau", type=argument(check_tau, float), default=None,
                   help="Z temperature, 0..10 (default: the model's own, Rescaler.default_tau)")
    d.add_argument("--tau-b", type=argument(check_tau_b, float), default=DEFAULT_TAU_B,
                   help="the share of tau that Z keeps in B's boundary cells, 0..1 (default 0: Z at its mean where B "
                   "marks a boundary, texture sampled elsewhere; 1: the paper's one tau everywhere)")
    d.add_argument("--seed", type=argument(check_seed), default=0,
                   help="Z seed, 0..2^63-1: same file, model, tau, tau_b and seed give the same image (default 0)")
    d.set_defaults(func=cmd_decode)

    i = command("info", "print a .bdf file's header and sizes")
    i.add_argument("input", type=Path, nargs="+", help=".bdf files")
    i.add_argument("--json", action="store_true", help="one JSON object per file")
    i.set_defaults(func=cmd_info)
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)  # exits with 2 on usage errors, with the rule's message
    try:
        return args.func(args)
    except (CodecError, ValueError, OSError) as err:  # OSError covers FileExistsError, FileNotFoundError
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
