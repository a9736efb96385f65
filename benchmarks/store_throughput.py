"""Run store speed: reader latency on a big store, and the writer's cost on the training thread.

Readers: a synthetic run of ``--layers`` x ``--steps`` (default 500 x 100,000, one metric, made by
``netsight.store.synthetic.fill``); each query is repeated ``--repeats`` times, interleaved, and its
p50/p95 printed. The contract: layer_matrix(max_steps=2000) and series/layer_series p95 < 100 ms.

Writer: (a) the training-thread time of ``run.log`` and ``run.log_layers`` (``--layers`` x
``--metrics`` statistics in one tensor) with a queue that never pushes back, and the steps per second
the background writer sustains; (b) a real training step (an MLP, ``--width``) with and without that
logging, in interleaved blocks, median ratio printed.

    python benchmarks/store_throughput.py                      # CPU, defaults
    python benchmarks/store_throughput.py --device cuda        # statistics tensors on the GPU
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import netsight as ns
from netsight import store
from netsight.store import synthetic


def readers(root: Path, layers: int, steps: int, repeats: int) -> None:
    t0 = time.perf_counter()
    name = synthetic.fill(root, "big", layers=layers, steps=steps, progress=False)
    fill_s = time.perf_counter() - t0
    size = sum(p.stat().st_size for p in root.glob("big.sqlite*")) / 2**20
    print(f"fill: {layers} layers x {steps} steps in {fill_s:.1f} s, {size:.0f} MiB")
    r = store.open(root).run(name)
    names = r.layers()
    mid = steps // 2
    queries = {
        "layer_matrix(max_steps=2000, agg=max)": lambda: r.layer_matrix("grad_norm", max_steps=2000),
        "layer_matrix(max_steps=2000, agg=mean)": lambda: r.layer_matrix(
            "grad_norm", max_steps=2000, agg="mean"
        ),
        "layer_matrix(max_steps=2000, agg=last)": lambda: r.layer_matrix(
            "grad_norm", max_steps=2000, agg="last"
        ),
        "layer_matrix(zoom 10% window)": lambda: r.layer_matrix(
            "grad_norm", max_steps=2000, start=mid, end=mid + steps // 10
        ),
        "layer_matrix(layers='blocks.1*.*')": lambda: r.layer_matrix(
            "grad_norm", layers="blocks.1*.*", max_steps=2000
        ),
        "layer_matrix, cold (new reader, no cache)": lambda: (
            store.open(root).run(name).layer_matrix("grad_norm", max_steps=2000)
        ),
        "series(loss, max_points=2000)": lambda: r.series("loss", max_points=2000),
        "layer_series(max_points=2000)": lambda: r.layer_series("grad_norm", names[len(names) // 2]),
        "step_values(latest)": lambda: r.step_values("grad_norm"),
        "step_values(step=mid)": lambda: r.step_values("grad_norm", step=mid),
        "histograms(max_steps=200)": lambda: r.histograms(names[0], "grad"),
        "changes_since(0)": lambda: r.changes_since(0),
    }
    times: dict[str, list[float]] = {k: [] for k in queries}
    for q in queries.values():  # warm the page cache once
        q()
    for _ in range(repeats):
        for k, q in queries.items():
            t = time.perf_counter()
            q()
            times[k].append((time.perf_counter() - t) * 1e3)
    print(f"\n{'query':44s} {'p50 ms':>8s} {'p95 ms':>8s} {'max ms':>8s}")
    for k, ts in times.items():
        p50, p95 = np.percentile(ts, [50, 95])
        print(f"{k:44s} {p50:8.1f} {p95:8.1f} {max(ts):8.1f}")


def writer(
    root: Path, layers: int, metrics: int, steps: int, *, blocks: int, device: str, width: int
) -> None:
    names = [f"layer{i}" for i in range(layers)]
    mnames = [f"m{j}" for j in range(metrics)]
    base = torch.randn(layers, metrics, device=device)

    # (a) the enqueue cost alone: a queue big enough never to push back, the writer thread running
    run = ns.open_run(root, name="enqueue", queue_size=1_000_000)
    t_log: list[float] = []
    t_layers: list[float] = []
    loss = torch.tensor(1.0, device=device)
    cpu0 = time.thread_time()
    for s in range(steps * blocks):
        vals = base * (1.0 + 1e-3 * s)  # a fresh statistics tensor each step, as a monitor makes
        t0 = time.perf_counter()
        run.log({"loss": loss, "lr": 0.1}, step=s)
        t1 = time.perf_counter()
        run.log_layers(s, names, mnames, vals)
        t_layers.append(time.perf_counter() - t1)
        t_log.append(t1 - t0)
    train_cpu = time.thread_time() - cpu0
    t = time.perf_counter()
    run.close()
    drain = time.perf_counter() - t
    n = steps * blocks
    print(
        f"\nwriter, {layers} layers x {metrics} metrics + 2 scalars per step, device={device}\n"
        f"  training thread, run.log (2 scalars, one 0-d tensor): "
        f"{statistics.median(t_log) * 1e6:7.1f} us per call (median wall)\n"
        f"  training thread, run.log_layers ([{layers}, {metrics}] tensor): "
        f"{statistics.median(t_layers) * 1e6:7.1f} us per call (median wall)\n"
        f"  training thread CPU for the whole loop (tensor op + both calls): "
        f"{train_cpu / n * 1e6:7.1f} us per step\n"
        f"  background writer thread CPU: {run.writer_cpu_seconds / n * 1e3:.2f} ms per step "
        f"({n} steps; close() drained the rest in {drain:.2f} s)"
    )

    # (b) side by side with a real training step (an MLP of `width`), interleaved blocks
    model = torch.nn.Sequential(
        torch.nn.Linear(width, width),
        torch.nn.ReLU(),
        torch.nn.Linear(width, width),
        torch.nn.ReLU(),
        torch.nn.Linear(width, 10),
    ).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    x = torch.randn(64, width, device=device)
    y = torch.randint(0, 10, (64,), device=device)

    def train_step() -> torch.Tensor:
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.detach()

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    run = ns.open_run(root, name="side-by-side")
    for _ in range(5):
        train_step()
    bare: list[float] = []
    logged: list[float] = []
    s = 0
    for _ in range(blocks):
        sync()
        t = time.perf_counter()
        for _ in range(steps):
            train_step()
        sync()
        bare.append((time.perf_counter() - t) / steps)
        t = time.perf_counter()
        for _ in range(steps):
            loss = train_step()
            run.log({"loss": loss}, step=s)
            run.log_layers(s, names, mnames, base * loss)
            s += 1
        sync()
        logged.append((time.perf_counter() - t) / steps)
    run.close()
    ratios = [lg / b for lg, b in zip(logged, bare, strict=True)]
    print(
        f"  side by side, MLP width {width} batch 64: bare step {statistics.median(bare) * 1e3:.2f} ms, "
        f"with logging {statistics.median(logged) * 1e3:.2f} ms, "
        f"median ratio {statistics.median(ratios):.3f}x "
        f"({blocks} interleaved blocks of {steps} steps)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, default=500)
    ap.add_argument("--steps", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--metrics", type=int, default=20, help="metrics per step in the writer benchmark")
    ap.add_argument("--writer-steps", type=int, default=200, help="steps per block in the writer benchmark")
    ap.add_argument("--blocks", type=int, default=7)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--width", type=int, default=1024, help="MLP width of the side-by-side training step")
    ap.add_argument("--dir", default=None, help="where to build the stores (default: a temporary directory)")
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: leave torch's default)")
    ap.add_argument("--skip-readers", action="store_true")
    ap.add_argument("--skip-writer", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="netsight-store-bench-"))
    try:
        if not args.skip_readers:
            readers(root / "readers", args.layers, args.steps, args.repeats)
        if not args.skip_writer:
            writer(
                root / "writer",
                args.layers,
                args.metrics,
                args.writer_steps,
                blocks=args.blocks,
                device=args.device,
                width=args.width,
            )
    finally:
        if not args.dir:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
