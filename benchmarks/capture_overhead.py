"""Capture overhead: forward+backward of ResNet-18 bare versus capturing statistics of every layer.

Side by side in one process, interleaved (bare, captured, bare, captured, ...), medians of the step
times, and their ratio. Goal (issue 2): <= 1.15x on the CPU at batch 32.

    python benchmarks/capture_overhead.py                      # CPU, ResNet-18, batch 32, 224 px
    python benchmarks/capture_overhead.py --device cuda --model resnet50 --batch 64
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable

import torch
import torchvision

import netsight as ns


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--reduce", default="stats", help="reducer(s), comma separated")
    args = ap.parse_args(argv)

    device = torch.device(args.device)
    model = getattr(torchvision.models, args.model)(num_classes=1000).to(device).train()
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    y = torch.randint(0, 1000, (args.batch,), device=device)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step() -> None:
        model.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()

    reduce = args.reduce.split(",")
    cap = ns.capture(model, grads=True, reduce=reduce)  # every leaf module

    def captured() -> None:
        with cap:
            step()
            cap.stacked("stats")  # the summaries of every layer, gathered as one tensor
            cap.stacked("stats", grad=True)
        cap.clear()

    def timed(fn: Callable[[], None]) -> float:
        _sync(device)
        t = time.perf_counter()
        fn()
        _sync(device)
        return time.perf_counter() - t

    for _ in range(2):
        step()
        captured()
    bare_t, cap_t = [], []
    for _ in range(args.repeats):
        bare_t.append(timed(step))
        cap_t.append(timed(captured))
    bare, withcap = statistics.median(bare_t), statistics.median(cap_t)
    ratios = [c / b for b, c in zip(bare_t, cap_t)]
    n_layers = len(cap.selected)
    print(
        f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
        f"device {device}" + (f" ({torch.cuda.get_device_name()})" if device.type == "cuda" else "")
    )
    print(
        f"{args.model} batch {args.batch} at {args.size}px, fwd+bwd, {n_layers} leaf modules, "
        f"reduce={reduce}, activations and gradients"
    )
    print(f"bare     median {bare * 1000:8.1f} ms")
    print(f"captured median {withcap * 1000:8.1f} ms")
    print(
        f"ratio (median of medians) {withcap / bare:.3f}x; median of paired ratios "
        f"{statistics.median(ratios):.3f}x"
    )
    return {"bare_ms": bare * 1000, "captured_ms": withcap * 1000, "ratio": withcap / bare}


if __name__ == "__main__":
    main()
