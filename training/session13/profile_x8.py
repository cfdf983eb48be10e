"""Where the shipped x8's 512^2 fp32 round trip spends its time (session 13, issue #17's 30x target).

    python training/session13/profile_x8.py [--size 512] [--repeats 5]

torch.profiler over ``repeats`` encode+decode round trips (after a warm-up), grouped by operator: the share of
convolutions (what MACs count) against the rest (lifting, the couplings' element-wise steps, copies).
"""

import argparse

import torch
from torch.profiler import ProfilerActivity, profile

from bdflow import Rescaler
from bdflow.accel import keep_freed_memory
from bdflow.flow import sample_z

p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
p.add_argument("--size", type=int, default=512)
p.add_argument("--repeats", type=int, default=5)
args = p.parse_args()
keep_freed_memory()
model = Rescaler.from_pretrained("checkpoints/face-x8", device="cpu", precision="fp32").model
x = torch.rand(1, 3, args.size, args.size)


@torch.inference_mode()
def round_trip():
    y, b, z = model(x)
    return model.inverse(y, b, sample_z(y, model.config.z_channels, tau=0.0))


round_trip()
with profile(activities=[ProfilerActivity.CPU]) as prof:
    for _ in range(args.repeats):
        round_trip()
events = prof.key_averages()
total = sum(e.self_cpu_time_total for e in events)
conv = sum(e.self_cpu_time_total for e in events if "conv" in e.key or "mkldnn" in e.key)
print(f"self CPU time per round trip: {total / args.repeats / 1e6:.3f} s; convolutions {100 * conv / total:.1f} %")
print("| operator | share % | calls per round trip |")
print("|---|---|---|")
for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:15]:
    print(f"| {e.key} | {100 * e.self_cpu_time_total / total:.1f} | {e.count // args.repeats} |")
