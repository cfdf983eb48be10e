"""Speed and size of BDFlow at each scale, beside the paper's Table 2 and IRN (a benchmark, not a test).

    python benchmarks/speed.py --peer                       # the README's tables (CPU), IRN side by side
    python benchmarks/speed.py --train                      # the training step: by part, old against fast
    python benchmarks/speed.py --scales 16 --sizes 1024 --repeats 5 --precisions fp32 bf16 --no-train
    python benchmarks/speed.py --scales 8 --sizes 512 --precisions fp32 --no-train --no-allocator --profile
    python benchmarks/speed.py --device cuda --scales 64 --sizes 1024 --precisions fp32 bf16 --compile --no-train

Prints Markdown: parameters, multiply-accumulates of the forward (encode) and inverse (decode) pass counted by
``torch.utils.flop_counter`` (GMACs = torch FLOPs / 2, the unit papers usually call FLOPs), the median
encode+decode wall time (the flow's forward, then its inverse with a Z sample) per image size and precision
(``bdflow.accel``: fp32 is the exact model, bf16 runs its subnets in bfloat16), the training step of the shipped
x8 and x16 recipes (by part, and the old eager fp32 step against the fast one ``bdflow.train`` uses by default),
and with ``--peer`` IRN's x8 architecture (benchmarks/irn_peer.py) timed alternately with bdflow x8 in the same
process, with the ratio. The shipped checkpoints (checkpoints/face-x*) are used where present (the default
config otherwise: speed does not depend on the weights). Every time is the median of --repeats runs after a
warm-up; variants are interleaved so that load from other processes hits them alike. ``--compile`` adds a
torch.compile'd fp32 variant (its compile time printed apart; on CUDA with CUDA graphs). On the CPU the benchmark
runs as the app and the CLI do, with ``bdflow.accel.keep_freed_memory()``; its own table (x16, the largest size)
times each precision with it and with glibc's 128 kB thresholds, interleaved (``--no-allocator`` skips it).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bdflow import BDFlow, BDFlowConfig, LossConfig  # noqa: E402
from bdflow.accel import KEEP_BYTES, accelerate, keep_freed_memory, train_precision  # noqa: E402
from bdflow.bam import boundary_strength  # noqa: E402
from bdflow.limits import PRECISIONS  # noqa: E402
from bdflow.losses import (Passes, backward_loss, baw_weight, bdflow_loss, forward_loss,  # noqa: E402
                           grid_energy_loss)
from bdflow.lpips import lpips  # noqa: E402
from bdflow.quantize import quantize_b, quantize_y  # noqa: E402
from bdflow.resize import bicubic_down  # noqa: E402
from bdflow.train import TrainConfig, crop_batches, fast_step  # noqa: E402
from irn_peer import IRN  # noqa: E402

PAPER_TABLE2 = {  # scale: (params M, FLOPs G, time s) of BDFlow in the paper (GPU, unstated input size)
    8: (3.16, 3.4399, 0.050),
    16: (4.58, 1.9119, 0.027),
    32: (15.94, 2.0933, 0.032),
    64: (60.72, 2.2720, 0.036),
}
IRN_PAPER_PARAMS = 11.12  # what the architecture of irn_peer.py has at x8 (the IRN paper does not list it)


def gmacs(fn) -> float:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 2e9


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved_medians(fns: dict, repeats: int, device: torch.device) -> dict[str, float]:
    """Median seconds of each zero-argument callable, run in turn (warm-up first) so that load hits all alike."""
    for fn in fns.values():
        fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            sync(device)
            t = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - t)
    return {name: statistics.median(ts) for name, ts in times.items()}


def load_model(scale: int, device: torch.device) -> BDFlow:
    folder = ROOT / "checkpoints" / f"face-x{scale}"
    model = BDFlow.from_pretrained(folder) if folder.is_dir() else BDFlow(BDFlowConfig(scale=scale))
    return model.to(device).eval()


def round_trip(net, x: torch.Tensor) -> torch.Tensor:
    """Encode + decode: the forward pass, then the inverse with a Z sample (tau = 0.8) in place of Z."""
    y, b, z = net(x)
    return net.inverse(y, b, torch.randn_like(z) * 0.8)


def variants(model: BDFlow, precisions, compile_: bool, device: torch.device) -> dict:
    """name -> fn(x): the round trip at each precision (bdflow.accel), and torch.compile'd at fp32."""
    fns = {p: (lambda x, net=accelerate(model, p, device): round_trip(net, x)) for p in precisions}
    if compile_:
        compiled = torch.compile(round_trip, dynamic=False, mode="reduce-overhead" if device.type == "cuda" else None)
        fns["fp32+compile"] = lambda x: compiled(model, x)
    return fns


def timed(fns: dict, x: torch.Tensor, repeats: int, device: torch.device) -> dict[str, float]:
    if "fp32+compile" in fns:  # the first call of a new shape compiles
        t = time.perf_counter()
        fns["fp32+compile"](x)
        print(f"(torch.compile of the {tuple(x.shape)} round trip: {time.perf_counter() - t:.0f} s)", flush=True)
    return interleaved_medians({name: (lambda fn=fn: fn(x)) for name, fn in fns.items()}, repeats, device)


@torch.inference_mode()
def inference_table(scales, sizes, repeats, precisions, compile_, device) -> None:
    names = list(precisions) + (["fp32+compile"] if compile_ else [])
    print(f"\n**Inference on {device_name(device)}, encode+decode, median of {repeats}**\n")
    head = "| scale | params (M) | paper params (M) | encode GMACs @256² | decode GMACs @256² | paper GFLOPs |"
    head += "".join(f" {s}² {n} (s) |" for s in sizes for n in names) + " paper time (s) |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for scale in scales:
        model = load_model(scale, device)
        params = sum(p.numel() for p in model.parameters()) / 1e6
        x = torch.rand(1, 3, 256, 256, device=device)
        y, b, z = model(x)
        enc, dec = gmacs(lambda: model(x)), gmacs(lambda: model.inverse(y, b, z))
        fns = variants(model, precisions, compile_, device)
        cells = []
        for size in sizes:
            medians = timed(fns, torch.rand(1, 3, size, size, device=device), repeats, device)
            cells += [medians[n] for n in names]
        p_params, p_flops, p_time = PAPER_TABLE2.get(scale, (float("nan"),) * 3)
        row = f"| x{scale} | {params:.2f} | {p_params} | {enc:.2f} | {dec:.2f} | {p_flops} |"
        print(row + "".join(f" {t:.3f} |" for t in cells) + f" {p_time} |", flush=True)


GLIBC_THRESHOLD = 128 * 1024  # glibc's initial mmap and trim thresholds (its dynamic raise is off once set)


@torch.inference_mode()
def allocator_table(size, repeats, precisions) -> None:
    """x16 at size², each precision with freed memory kept (the app's setting) and with glibc's thresholds,
    interleaved in one loop (mallopt switches between the two before each call)."""
    print(f"\n**Allocator: x16 {size}² encode+decode on {device_name(torch.device('cpu'))}, median of {repeats}**\n")
    print("| precision | freed memory kept (s) | glibc's 128 kB thresholds (s) | ratio |")
    print("|---|---|---|---|")
    model, x = load_model(16, torch.device("cpu")), torch.rand(1, 3, size, size)
    for precision in precisions:
        net = accelerate(model, precision, "cpu")

        def run(limit, net=net):
            keep_freed_memory(limit)
            round_trip(net, x)

        medians = interleaved_medians({"kept": lambda: run(KEEP_BYTES), "glibc": lambda: run(GLIBC_THRESHOLD)},
                                      repeats, torch.device("cpu"))
        print(f"| {precision} | {medians['kept']:.3f} | {medians['glibc']:.3f} | {medians['glibc'] / medians['kept']:.2f}x |",
              flush=True)
    keep_freed_memory()


def irn_round_trip(net, x: torch.Tensor) -> torch.Tensor:
    return net.inverse(net(x))


LIGHT_VARIANTS = {  # x8 designs timed beside the shipped one (random weights; one equal to the shipped design is
    # not timed twice): residual blocks from level 2 or 3, and the shipped design with one InvBlock at level 1
    "res_from_level 2": dict(res_from_level=2, level1_blocks=0),
    "res_from_level 3": dict(res_from_level=3, level1_blocks=0),
    "res_from_level 3, level1_blocks 1": dict(res_from_level=3, level1_blocks=1),
}


@torch.inference_mode()
def peer_table(sizes, repeats, device) -> None:
    """bdflow x8 (the shipped model, and the flow of LIGHT_VARIANTS: lighter or heavier fine levels,
    ``res_from_level`` and ``level1_blocks``, random weights) and IRN x8 (random weights) at fp32, interleaved in one
    loop; the ratio per size. (fp32 only: IRN's dense subnets concatenate, which oneDNN's blocked tensors of the bf16
    path do not support.)"""
    print(f"\n**Side by side with IRN's x8 architecture on {device_name(device)}, encode+decode, median of {repeats}**\n")
    print("| size | bdflow x8 | bdflow fp32 (s) | IRN x8 fp32 (s) | IRN / bdflow | GMACs bdflow / IRN | IRN / bdflow GMACs |")
    print("|---|---|---|---|---|---|---|")
    shipped = load_model(8, device)
    designs = {name: dataclasses.replace(shipped.config, **change) for name, change in LIGHT_VARIANTS.items()}
    ours = {"shipped": shipped, **{name: BDFlow(config).to(device).eval() for name, config in designs.items()
                                   if config != shipped.config}}
    peer = IRN(scale=8).to(device).eval()
    for size in sizes:
        x = torch.rand(1, 3, size, size, device=device)
        fns = {name: (lambda m=m: round_trip(m, x)) for name, m in ours.items()}
        medians = interleaved_medians({**fns, "irn": lambda: irn_round_trip(peer, x)}, repeats, device)
        irn_macs = gmacs(lambda: irn_round_trip(peer, x))
        for name, fn in fns.items():
            a, b, macs = medians[name], medians["irn"], gmacs(fn)
            print(f"| {size}² | {name} | {a:.3f} | {b:.3f} | {b / a:.1f}x | {macs:.1f} / {irn_macs:.1f} | "
                  f"{irn_macs / macs:.1f}x |", flush=True)
    params = sum(p.numel() for p in peer.parameters()) / 1e6
    print(f"\nIRN x8 as re-created: {params:.2f} M parameters, 8 InvBlocks per level, 5-conv dense subnets of growth 32;"
          f" bdflow x8: {sum(p.numel() for p in shipped.parameters()) / 1e6:.2f} M.")


@torch.inference_mode()
def profile_table(sizes, repeats, device) -> None:
    """Where the shipped x8's fp32 round trip (the peer table's) spends its time: torch.profiler over ``repeats``
    round trips after a warm-up, grouped by operator (self time), convolutions (what MACs count) against the rest."""
    model = load_model(8, device)
    for size in sizes:
        x = torch.rand(1, 3, size, size, device=device)
        round_trip(model, x)
        with torch.profiler.profile() as prof:
            for _ in range(repeats):
                round_trip(model, x)
        events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
        total = sum(e.self_cpu_time_total for e in events)
        conv = sum(e.self_cpu_time_total for e in events if "conv" in e.key)
        print(f"\n**Profile: x8 {size}² fp32 encode+decode on {device_name(device)}, by operator, {repeats} round trips"
              f" (convolutions {100 * conv / total:.1f} %)**\n")
        print("| operator | share of self time % | calls per round trip |")
        print("|---|---|---|")
        for e in events[:15]:
            print(f"| {e.key} | {100 * e.self_cpu_time_total / total:.1f} | {e.count // repeats} |")


# ----------------------------------------------------------------------------------------------------
# The training step (python benchmarks/speed.py --train): the shipped x8 and x16 recipes, old step against fast
# ----------------------------------------------------------------------------------------------------

TRAIN_RECIPES = {8: "face-x8", 16: "face-x16"}  # the checkpoints whose recipe (model, loss, batch, crop) is timed
STEP_PROGRESS = 0.7  # BAW and LPIPS on, as in the last part of every recipe


def recipe(scale: int, device: torch.device) -> tuple[BDFlow, TrainConfig]:
    """The shipped model of ``scale`` in training mode, and its recipe's run config (batch, crop, data)."""
    model = BDFlow.from_pretrained(ROOT / "checkpoints" / TRAIN_RECIPES[scale]).to(device).train()
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    run = TrainConfig(**{k: v for k, v in model.meta.get("training", {}).items() if k in fields})
    run.data = str(ROOT / ".." / "shared" / "data" / "faces" / "train")
    return model, run


def train_step(model: BDFlow, run: TrainConfig, device: torch.device, precision: str, compiled: bool, cache: bool):
    """One training step as ``bdflow.train`` runs it - load batch t, Eq. 7, backward, clip, Adam - at ``precision``,
    eager or compiled, with or without the decoded-image cache: a callable of no argument (each call the next t)."""
    model = copy.deepcopy(model)
    train_precision(model, precision)
    passes = Passes.compiled(model, device) if compiled else Passes.of(model)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-6)
    batches = crop_batches(run, run.seed, cache=cache)
    counter = iter(range(10**9))

    def step():
        t = next(counter) % 8  # 8 batches in turn: the cache is warm after the first 8 calls (the warm-up)
        x, bits = batches[t]
        generator = torch.Generator(device=device).manual_seed(t)
        terms = bdflow_loss(model, x.to(device), bits, STEP_PROGRESS, generator, passes)
        optimizer.zero_grad(set_to_none=True)
        terms.total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), run.grad_clip)
        optimizer.step()
    return step


def step_parts(model: BDFlow, run: TrainConfig, device: torch.device, repeats: int) -> dict[str, float]:
    """Median seconds of each part of one eager fp32 step (the old step), timed in place: the part's own work."""
    c, lc = model.config, model.loss_config
    model = copy.deepcopy(model)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-6)
    batches = crop_batches(run, run.seed)
    times: dict[str, list[float]] = {}
    for t in range(repeats + 1):
        clock = [time.perf_counter()]

        def lap(name):
            sync(device)
            now = time.perf_counter()
            times.setdefault(name, []).append(now - clock[0])
            clock[0] = now

        x, bits = batches[t]
        x = x.to(device)
        lap("data (decode 8 JPEGs, crop)")
        b_s = boundary_strength(x, sigma=c.bam_sigma, norm=c.bam_norm, threshold=c.bam_threshold)
        b_target = model.boundary_map(x, b_s)
        lap("BAM and B's target")
        y, b, _ = model(x, b_target)
        lap("flow forward")
        y_q = quantize_y(y)
        x_back = model.inverse(y_q, quantize_b(b, bits), torch.zeros(1, device=device).expand(
            len(x), c.z_channels, *y.shape[-2:]))
        lap("flow inverse")
        loss = (lc.lambda_forw * forward_loss(y, bicubic_down(x, c.scale))
                + backward_loss(x_back, x, baw_weight(b_s, lc.lambda_back, True)))
        if lc.lambda_grid:
            loss = loss + lc.lambda_grid * grid_energy_loss(x_back, x, y_q, c.scale)
        lap("L_forw, L_back, L_grid")
        loss = loss + lc.lambda_lpips * lpips(x_back.clamp(0, 1), x).mean()
        lap("LPIPS")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        lap("backward")
        torch.nn.utils.clip_grad_norm_(model.parameters(), run.grad_clip)
        optimizer.step()
        lap("clip + Adam")
    return {name: statistics.median(ts[1:]) for name, ts in times.items()}


def training_table(repeats, device, scales=(8, 16)) -> None:
    precision, compiled = fast_step(TrainConfig(iters=10**6), device)
    fast = f"fast ({precision}, {'compiled' if compiled else 'eager'}, image cache)"
    speedups = {}
    for scale in scales:
        model, run = recipe(scale, device)
        print(f"\n**Training step, shipped x{scale} recipe (batch {run.batch_size} of {run.crop}², BAW + LPIPS on), "
              f"{device_name(device)}: the old step by part, median of {repeats}**\n")
        parts = step_parts(model, run, device, repeats)
        total = sum(parts.values())
        print("| part | s | share % |\n|---|---|---|")
        for name, seconds in parts.items():
            print(f"| {name} | {seconds:.4f} | {100 * seconds / total:.0f} |")
        steps = {"old (fp32, eager, JPEGs decoded each step)": train_step(model, run, device, "fp32", False, False),
                 fast: train_step(model, run, device, precision, compiled, True)}
        t0 = time.perf_counter()
        for _ in range(8):  # warm-up: compiles, fills the cache
            steps[fast]()
        print(f"\n(warm-up of the fast step, compiling included: {time.perf_counter() - t0:.0f} s)\n")
        medians = interleaved_medians(steps, repeats, device)
        print("| step | s / step | it/s |\n|---|---|---|")
        for name, seconds in medians.items():
            print(f"| {name} | {seconds:.3f} | {1 / seconds:.2f} |", flush=True)
        old, new = medians.values()
        speedups[scale] = old / new
    print("\ntrain step speed-up: " + ", ".join(f"x{s} {r:.2f}x" for s, r in speedups.items()))


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpuinfo = Path("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
             if line.startswith("model name")] if cpuinfo.is_file() else []
    return f"CPU ({names[0] if names else platform.machine()}, {torch.get_num_threads()} threads)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", type=int, nargs="+", default=[8, 16, 32, 64])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--precisions", nargs="+", choices=PRECISIONS, default=list(PRECISIONS))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--compile", action="store_true", help="add a torch.compile'd fp32 variant")
    parser.add_argument("--peer", action="store_true", help="IRN x8 side by side (at --peer-sizes)")
    parser.add_argument("--peer-sizes", type=int, nargs="+", default=[512])
    parser.add_argument("--profile", action="store_true", help="the x8 round trip by operator (at --peer-sizes)")
    parser.add_argument("--no-train", action="store_true", help="skip the training-step tables")
    parser.add_argument("--train", action="store_true", help="only the training-step tables: the shipped x8 and x16 "
                        "recipes' step by part, and the old step against the fast one (last line: the speed-ups)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--no-allocator", action="store_true", help="skip the allocator table (CPU)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available here")
    if device.type == "cpu":
        keep_freed_memory()
    load = os.getloadavg()
    print(f"torch {torch.__version__}, {device_name(device)}; load average {load[0]:.1f} at the start")
    if args.train:
        training_table(args.repeats, device)
        print(f"\nload average {os.getloadavg()[0]:.1f} at the end")
        return
    inference_table(args.scales, args.sizes, args.repeats, args.precisions, args.compile, device)
    if device.type == "cpu" and not args.no_allocator:
        allocator_table(max(args.sizes), args.repeats, args.precisions)
    if args.peer:
        peer_table(args.peer_sizes, args.repeats, device)
    if args.profile:
        profile_table(args.peer_sizes, args.repeats, device)
    if not args.no_train:
        training_table(args.repeats, device)
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
