"""Speed and size of the default BDFlow at each scale, beside the paper's Table 2 (a benchmark, not a test).

    python benchmarks/speed.py                 # CPU (and CUDA when present)
    python benchmarks/speed.py --sizes 256 512 --repeats 5 --scales 8 64

Prints parameters, multiply-accumulates of the forward (encode) and inverse (decode) pass counted by
``torch.utils.flop_counter`` (GMACs = torch FLOPs / 2, the unit papers usually call FLOPs), the median
encode+decode wall time per image size, and the training-step throughput at batch 16 (128^2 crops at x8,
256^2 crops at x64). Medians of repeated runs, measured side by side in one process.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from bdflow import BDFlow, BDFlowConfig
from bdflow.losses import bdflow_loss

PAPER_TABLE2 = {  # scale: (params M, FLOPs G, time s) of BDFlow in the paper (GPU, unstated input size)
    8: (3.16, 3.4399, 0.050),
    16: (4.58, 1.9119, 0.027),
    32: (15.94, 2.0933, 0.032),
    64: (60.72, 2.2720, 0.036),
}


def gmacs(fn) -> float:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 2e9


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(fn, repeats: int, device: torch.device) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        sync(device)
        t = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


@torch.inference_mode()
def round_trip(model: BDFlow, x: torch.Tensor) -> torch.Tensor:
    y, b, z = model(x)
    return model.inverse(y, b, torch.zeros_like(z))


def inference_table(scales, sizes, repeats, device) -> None:
    print(f"\n## Inference on {device} ({torch.get_num_threads()} threads), median of {repeats}")
    head = "| scale | params (M) | paper params (M) | encode GMACs @256² | decode GMACs @256² | paper GFLOPs |"
    head += "".join(f" enc+dec {s}² (s) |" for s in sizes) + " paper time (s) |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for scale in scales:
        model = BDFlow(BDFlowConfig(scale=scale)).to(device).eval()
        params = sum(p.numel() for p in model.parameters()) / 1e6
        x = torch.rand(1, 3, 256, 256, device=device)
        with torch.inference_mode():
            y, b, z = model(x)
            enc = gmacs(lambda: model(x))
            dec = gmacs(lambda: model.inverse(y, b, z))
        times = [median_seconds(lambda: round_trip(model, torch.rand(1, 3, s, s, device=device)), repeats, device) for s in sizes]
        p_params, p_flops, p_time = PAPER_TABLE2.get(scale, (float("nan"),) * 3)
        row = f"| x{scale} | {params:.2f} | {p_params} | {enc:.2f} | {dec:.2f} | {p_flops} |"
        print(row + "".join(f" {t:.3f} |" for t in times) + f" {p_time} |", flush=True)


def training_table(repeats, device) -> None:
    print(f"\n## Training step on {device} ({torch.get_num_threads()} threads), batch 16, full loss (Eq. 7), median of {repeats}")
    print("| scale | crop | s / step | it/s |")
    print("|---|---|---|---|")
    for scale, crop in ((8, 128), (64, 256)):
        model = BDFlow(BDFlowConfig(scale=scale)).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=2e-4)
        x = torch.rand(16, 3, crop, crop, device=device)

        def step():
            optimizer.zero_grad(set_to_none=True)
            bdflow_loss(model, x, bits=1, progress=0.5).total.backward()
            optimizer.step()

        seconds = median_seconds(step, repeats, device)
        print(f"| x{scale} | {crop}² | {seconds:.2f} | {1 / seconds:.2f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", type=int, nargs="+", default=[8, 16, 32, 64])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-train", action="store_true", help="skip the training-step throughput")
    args = parser.parse_args()
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    print(f"torch {torch.__version__}; default BDFlowConfig: {BDFlowConfig()}")
    for device in devices:
        inference_table(args.scales, args.sizes, args.repeats, device)
        if not args.no_train:
            training_table(args.repeats, device)


if __name__ == "__main__":
    main()
