"""Latency and load test of the app through gradio_client, against a local server.

    python benchmarks/load.py                          # starts app.py's app on a free port, then measures
    python benchmarks/load.py --url http://127.0.0.1:7860/ --clients 16 --requests 10

1. Latency per action for one user (median of --repeats), as round trips of gradio_client (upload, queue, PNG
   files and all) and, for the decoder, in-process too (``Demo.decode`` alone): a new image (encode), moving tau,
   bits or the seed (decode only: the encoder's result is cached per input), the numbers (scores).
2. Load and abuse: --clients concurrent clients, each sending --requests mixed calls in turn: /decode, /scores,
   /diversity with a new (tau, seed) each, so that nothing is answered from the cache, and uploads of bad files
   (text named .png, a truncated PNG, an empty file, a 4x4 image), which must be refused with bdflow's message.
   Prints server errors (must be 0), p50/p95/max latency per kind, the refusal messages, and whether the server
   still answers afterwards.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def variants(image: Path, n: int, folder: Path, side: int | None) -> list[Path]:
    """n copies of the image differing in one pixel (distinct content: the encoder cache misses)."""
    rgb = Image.open(image).convert("RGB")
    if side:
        rgb = rgb.resize((side, side), Image.LANCZOS)
    a = np.asarray(rgb).copy()
    out = []
    for i in range(n):
        a[0, 0, 0] = i % 256
        a[0, 0, 1] = i // 256
        path = folder / f"variant-{i}.png"
        Image.fromarray(a).save(path)
        out.append(path)
    return out


def timed(fn, *args, **kwargs) -> float:
    t = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - t


def handler(blocks, api_name: str):
    """The function app.py binds to an endpoint (its error wrapper, the Demo call and the PNG files it writes)."""
    return next(f.fn for f in blocks.fns.values() if f.api_name == api_name)


def latency(url: str, image: Path, label: str, repeats: int, folder: Path, side: int | None, demo=None,
            blocks=None) -> None:
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False)
    imgs = variants(image, repeats + 1, folder, side)
    base = handle_file(str(imgs[0]))
    client.predict(base, label, api_name="/encode")  # warm up (and fill the cache for the decode rows)
    client.predict(image=base, model=label, api_name="/scores")
    rows = {
        "new image (/encode)": [timed(client.predict, handle_file(str(p)), label, api_name="/encode") for p in imgs[1:]],
        "move tau (/decode)": [timed(client.predict, image=base, model=label, tau=0.05 * (i + 1), api_name="/decode")
                               for i in range(repeats)],
        "move bits (/decode)": [timed(client.predict, image=base, model=label, bits=1 + (i + 1) % 4, seed=100 + i,
                                      api_name="/decode") for i in range(repeats)],
        "new seed (/decode)": [timed(client.predict, image=base, model=label, seed=1000 + i, api_name="/decode")
                               for i in range(repeats)],
        "numbers (/scores)": [timed(client.predict, image=base, model=label, seed=2000 + i, api_name="/scores")
                              for i in range(repeats)],
    }
    if demo is not None:
        an = demo.analyse(str(imgs[0]), label)
        rows["decode in-process (Demo.decode)"] = [timed(demo.decode, an, 1, 0.8, 5000 + i) for i in range(repeats)]
        rows["encode in-process (Demo.analyse)"] = [timed(demo.analyse, str(p), label) for p in imgs[1:]]
    if blocks is not None:  # an action in-process: the app's handler, what the server runs before Gradio's transport
        decode, encode = handler(blocks, "decode"), handler(blocks, "encode")
        (folder / "handler").mkdir(exist_ok=True)
        new = variants(image, 2 * repeats + 1, folder / "handler", side)[repeats + 1:]  # content not seen above
        rows["/decode handler in-process (new seed)"] = [timed(decode, str(imgs[0]), label, 1, 0.8, 6000 + i)
                                                         for i in range(repeats)]
        rows["/encode handler in-process (new image: forward pass, figures)"] = [timed(encode, str(p), label)
                                                                                for p in new]
    w, h = Image.open(imgs[0]).size
    print(f"\nlatency per action, {w}x{h} image, model {label}, median of {repeats} (min .. max), seconds")
    print("| action | median | min | max |\n|---|---|---|---|")
    for name, values in rows.items():
        print(f"| {name} | {statistics.median(values):.3f} | {min(values):.3f} | {max(values):.3f} |")


def bad_uploads(folder: Path, image: Path) -> dict[str, Path]:
    """Files a careless or hostile user uploads: text named .png, a truncated PNG, an empty file, a 4x4 image."""
    folder.mkdir(exist_ok=True)
    png = folder / "source.png"
    Image.open(image).convert("RGB").save(png)
    files = {"text.png": b"this is not an image", "truncated.png": png.read_bytes()[: png.stat().st_size // 3],
             "empty.png": b""}
    out = {}
    for name, data in files.items():
        (folder / name).write_bytes(data)
        out[name] = folder / name
    Image.new("RGB", (4, 4)).save(folder / "tiny.png")
    out["tiny.png"] = folder / "tiny.png"
    return out


KINDS = ("decode", "scores", "diversity", "bad upload")


def load(url: str, image: Path, label: str, clients: int, requests: int, folder: Path, side: int | None) -> int:
    """--clients clients x --requests mixed requests (decode, scores, diversity, bad uploads), all at once. A bad upload
    must be refused with bdflow's message; anything else that fails (a generic or unexpected error, a timeout, an
    empty answer) is a server error. Then one more /decode checks that the server is still alive."""
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    path = variants(image, 1, folder, side)[0]
    bad = list(bad_uploads(folder / "bad", path).values())
    Client(url, verbose=False).predict(handle_file(str(path)), label, api_name="/encode")  # the input is cached
    times: dict[str, list[float]] = {k: [] for k in KINDS}
    errors: list[str] = []
    refusals: dict[str, int] = {}
    lock = threading.Lock()
    start = threading.Barrier(clients)

    def request(client, kind: str, k: int, i: int) -> None:
        common = {"model": label, "tau": 0.1 + 0.05 * (i % 20), "seed": k * 1000 + i}
        if kind == "bad upload":
            bad_file = bad[k % len(bad)]
            try:
                client.predict(image=handle_file(str(bad_file)), api_name="/decode", **common)
            except AppError as err:
                if "unexpected server error" in str(err) or "Traceback" in str(err):
                    raise
                with lock:
                    refusals[f"{bad_file.name}: {err}"] = refusals.get(f"{bad_file.name}: {err}", 0) + 1
                return
            raise RuntimeError(f"{bad_file.name} was accepted")
        out = client.predict(image=handle_file(str(path)), api_name=f"/{kind}", **common,
                             **({"samples": 2} if kind == "diversity" else {}))
        if not out or not out[{"decode": 3, "scores": 1, "diversity": 0}[kind]]:
            raise RuntimeError(f"empty answer from /{kind}")

    def worker(k: int) -> None:
        try:
            client = Client(url, verbose=False)
        except Exception as err:  # noqa: BLE001
            with lock:
                errors.extend([f"client {k}: {type(err).__name__}: {err}"] * requests)
            return
        start.wait()
        for i in range(requests):
            kind = KINDS[(k + i) % len(KINDS)]
            t = time.perf_counter()
            try:
                request(client, kind, k, i)
                with lock:
                    times[kind].append(time.perf_counter() - t)
            except Exception as err:  # noqa: BLE001
                with lock:
                    errors.append(f"client {k} request {i} ({kind}): {type(err).__name__}: {err}")

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    total = clients * requests
    every = [v for values in times.values() for v in values]
    w, h = Image.open(path).size
    print(f"\nload on model {label}, {w}x{h} image: {clients} clients x {requests} mixed requests = {total} "
          f"({', '.join(KINDS)} in turn), {wall:.1f} s wall")
    print(f"server errors: {len(errors)}")
    for e in errors[:5]:
        print("  ", e)
    print("| request | answered | p50 (s) | p95 (s) | max (s) |\n|---|---|---|---|---|")
    for kind, values in [*times.items(), ("all", every)]:
        print(f"| {kind} | {len(values)} | {percentile(values, 50):.2f} | {percentile(values, 95):.2f} | "
              f"{max(values, default=float('nan')):.2f} |")
    print(f"throughput {len(every) / wall:.2f} requests/s; bad uploads refused with these messages:")
    for message, count in sorted(refusals.items()):
        print(f"  {count:3d} x {message}")
    try:
        out = Client(url, verbose=False).predict(image=handle_file(str(path)), model=label, seed=424242, api_name="/decode")
        alive = bool(out and out[3])
    except Exception as err:  # noqa: BLE001
        alive, errors = False, [*errors, f"after the load: {type(err).__name__}: {err}"]
    print(f"server alive afterwards: {'yes' if alive else 'NO'} (a fresh /decode answered)")
    return 1 if errors or not alive else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="a running app (default: start app.py's app in this process)")
    parser.add_argument("--image", type=Path, default=ROOT / "assets" / "face-female-015248.jpg")
    parser.add_argument("--side", type=int, default=None, help="resize the image to side x side first")
    parser.add_argument("--model", default=None, help="model label (default: the first one offered)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=10, help="requests per client")
    parser.add_argument("--repeats", type=int, default=5, help="repeats per action of the latency table")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--skip-load", action="store_true")
    args = parser.parse_args(argv)

    blocks = demo = None
    url = args.url
    if url is None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import app as app_module
        from bdflow.demo import Demo, model_sources

        demo = Demo.from_sources(model_sources(ROOT / "checkpoints"), precision=app_module.env_precision())
        blocks = app_module.configure(app_module.build(demo))
        port = free_port()
        blocks.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                      **app_module.launch_kwargs())
        url = f"http://127.0.0.1:{port}/"
        print(f"app on {url}: concurrency {os.environ.get('BDFLOW_CONCURRENCY', '1')}, "
              f"queue {os.environ.get('BDFLOW_QUEUE_SIZE', '64')}, torch threads {__import__('torch').get_num_threads()}, "
              f"precision {app_module.env_precision()}")
    label = args.model
    if label is None:
        from gradio_client import Client

        info = Client(url, verbose=False).view_api(print_info=False, return_format="dict")
        params = info["named_endpoints"]["/encode"]["parameters"]
        label = next(p for p in params if p["parameter_name"] == "model")["parameter_default"]
    rc = 0
    try:
        with tempfile.TemporaryDirectory() as tmp:
            if not args.skip_latency:
                latency(url, args.image, label, args.repeats, Path(tmp), args.side, demo, blocks)
            if not args.skip_load:
                rc = load(url, args.image, label, args.clients, args.requests, Path(tmp), args.side)
    finally:
        if blocks is not None:
            blocks.close()
    return rc


if __name__ == "__main__":
    sys.exit(main())
