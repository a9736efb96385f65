"""How long ``netsight demo`` takes, next to the same training loop without netsight.

Runs, interleaved ``--repeats`` times: (a) the bare loop (DemoCNN, Adam, the same data and batches, no
monitor, no explanations, no report) and (b) ``netsight.demo.run`` with its defaults (serve off).
Prints wall and CPU seconds of each, the demo's test accuracy, and the median ratio demo / bare.

    python benchmarks/demo_time.py [--repeats 3] [--epochs 3] [--device cuda] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
from torch.nn.functional import cross_entropy

import netsight.demo as nd


def bare(epochs: int, device: str, seed: int = 0) -> float:
    ds = nd.load("mnist", seed=seed)
    x, y = ds.x_train.to(device), ds.y_train.to(device)
    torch.manual_seed(seed)
    model = nd.DemoCNN().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(x.shape[0], generator=gen).to(device)
        for b in range(0, x.shape[0], 64):
            idx = perm[b : b + 64]
            loss = cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        return float((model(ds.x_test.to(device)).argmax(1) == ds.y_test.to(device)).float().mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}")
    rows: dict[str, list[tuple[float, float]]] = {"bare": [], "demo": []}
    for r in range(args.repeats):
        w, c = time.perf_counter(), time.process_time()
        acc_bare = bare(args.epochs, args.device)
        rows["bare"].append((time.perf_counter() - w, time.process_time() - c))
        with tempfile.TemporaryDirectory() as store:
            w, c = time.perf_counter(), time.process_time()
            res = nd.run(epochs=args.epochs, store=store, serve=False, progress=False, device=args.device)
            rows["demo"].append((time.perf_counter() - w, time.process_time() - c))
        print(
            f"repeat {r + 1}: bare {rows['bare'][-1][0]:.1f} s wall / {rows['bare'][-1][1]:.1f} s CPU "
            f"(acc {acc_bare:.2%}); demo {rows['demo'][-1][0]:.1f} s wall / {rows['demo'][-1][1]:.1f} s CPU "
            f"(acc {res.test_accuracy:.2%})"
        )
    ratio = statistics.median(d[0] / b[0] for d, b in zip(rows["demo"], rows["bare"], strict=True))
    print(
        f"median wall: bare {statistics.median(w for w, _ in rows['bare']):.1f} s, "
        f"demo {statistics.median(w for w, _ in rows['demo']):.1f} s, ratio demo/bare {ratio:.2f}"
    )


if __name__ == "__main__":
    main()
