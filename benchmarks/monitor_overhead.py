"""Overhead of ``ns.watch`` on a training step, side by side with the bare step and the usual recipes.

Variants, each timed on the same model, interleaved in random order within every repeat, medians
reported as ratios against the bare step timed in the same run. Each block's timing ends when the work
its steps left for background threads is done (``mon.flush()`` and the run store's ``flush()``,
TensorBoard's ``flush()``), so none of it spills into the next variant's block:

- ``bare``            forward, backward, optimizer step
- ``watch``           ``ns.watch(model, optimizer=opt, run=run)`` with defaults, in the steady state
                      (gradient norms every step, every statistic every 10th step, histograms on the
                      logarithmic schedule, written to a real run store)
- ``watch_all``       ``heavy="always"``: every statistic and the weight, gradient and activation
                      histograms every step
- ``watch_nostore``   defaults, ``run=None`` (the monitor alone: the store's writer thread left out)
- ``watch_nonan``     defaults with ``nan_origin=False``: no per-step read of the gradients' finiteness
                      before the update, which on a GPU is a wait for the backward pass every step (not
                      in the default list; the GPU session runs it to price that wait)
- ``watch_start``     defaults over a run's first steps (0, 1, 2, ...: the logarithmic schedule takes
                      histograms on every step below 10 and ~10 times per decade after); the other
                      ``watch`` variants number their steps from 1,000,000 (steady state)
- ``tb_histograms``   TensorBoard ``add_histogram`` of every gradient every step
- ``item_recipe``     the forum's ``plot_grad_flow`` recipe: mean and max |grad| per parameter with
                      ``.item()`` each

Allocator regime (CPU): glibc returns the top of its heap to the system when a free leaves more than a
threshold there, and raises that threshold (up to 32 MiB for the mmap threshold, twice that for the
trim threshold) the first time the process frees a block larger than the current one. Which
variant happens to free such a block first (closing a monitor frees its buffers) therefore decides
whether the *following* steps of every variant re-fault their heap pages, ~16,000 page faults and
~25 ms per ResNet-18 step on this box, and biases interleaved timings. ``--allocator warm`` (the
default) allocates and frees one 31 MiB tensor before timing, which puts the process, and so the bare
and the watched steps alike, in glibc's raised-threshold regime from the start; ``--allocator raw``
leaves it alone. Minor page faults per step are printed for every variant, so the regime is visible.

Usage::

    python benchmarks/monitor_overhead.py                          # CPU: two small CNNs and ResNet-18
    python benchmarks/monitor_overhead.py --device cuda --model resnet50 --batch 64 --size 224
"""

from __future__ import annotations

import argparse
import contextlib
import math
import platform
import random
import resource
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import netsight as ns


class SmallCNN(nn.Module):
    """The MNIST-sized CNN of the tests: two conv-bn-relu blocks, pooling, a linear classifier."""

    def __init__(self, in_ch: int = 1, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_ch, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(32 * 7 * 7, 64), nn.ReLU(), nn.Linear(64, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class MnistExampleNet(nn.Module):
    """The network of PyTorch's MNIST example (github.com/pytorch/examples, mnist/main.py): two 3x3
    convolutions (32, 64 channels), max pooling, dropout, a 9216-128-10 classifier; batch 64 there."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(self.dropout1(x), 1)
        x = self.dropout2(F.relu(self.fc1(x)))
        return self.fc2(x)


def build(
    name: str, batch: int, size: int, device: torch.device
) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    if name in ("cnn", "mnist"):
        model: nn.Module = SmallCNN() if name == "cnn" else MnistExampleNet()
        x = torch.randn(batch, 1, 28, 28)
    else:
        import torchvision

        model = getattr(torchvision.models, name)(weights=None)
        x = torch.randn(batch, 3, size, size)
    y = torch.randint(0, 10, (batch,))
    return model.to(device).train(), x.to(device), y.to(device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--model",
        action="append",
        help="mnist (PyTorch's MNIST example net), cnn (a smaller 16/32-channel CNN), resnet18, resnet50 "
        "(repeatable; default: mnist, cnn, resnet18)",
    )
    ap.add_argument(
        "--batch",
        type=int,
        default=None,
        help="default: 64 for mnist (as in the example), 32 for cnn, 8 for ResNets",
    )
    ap.add_argument(
        "--size", type=int, default=None, help="ResNet input size (default: 224 on cuda, else 112)"
    )
    ap.add_argument(
        "--steps",
        type=int,
        default=10,
        help="timed steps per block (a multiple of 10 keeps the default schedule's share of full-statistics "
        "steps, one in ten, in every block)",
    )
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument(
        "--variants", default="bare,watch,watch_all,watch_nostore,watch_start,tb_histograms,item_recipe"
    )
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument(
        "--allocator",
        choices=("warm", "raw"),
        default="warm",
        help="warm: free one 31 MiB tensor first (glibc's raised-threshold regime for every variant); "
        "raw: leave the allocator's history to the variants' order",
    )
    args = ap.parse_args()
    if args.allocator == "warm":
        del_me = torch.empty(31 << 18)  # 31 MiB: above glibc's default mmap threshold, below its cap
        del del_me
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    variants = args.variants.split(",")
    print(
        f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, device {device}, allocator {args.allocator}"
        + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
    )
    for name in args.model or ["mnist", "cnn", "resnet18"]:
        batch = args.batch or {"mnist": 64, "cnn": 32}.get(name, 8)
        run_model(
            name,
            batch=batch,
            size=args.size or (224 if device.type == "cuda" else 112),
            device=device,
            variants=variants,
            steps=args.steps,
            repeats=args.repeats,
        )


def run_model(
    name: str, *, batch: int, size: int, device: torch.device, variants: list[str], steps: int, repeats: int
) -> None:
    model, x, y = build(name, batch, size, device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    tmp = tempfile.TemporaryDirectory()
    run = ns.open_run(tmp.name, name=f"bench-{name}")

    def train_step() -> None:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=False)
        loss.backward()
        opt.step()

    # Steady state: the monitor's step numbers start past the logarithmic schedule's dense beginning
    # (every step below 10 and ~10 per decade after that carry histograms), as they are after the
    # first few thousand steps of a real run; ``watch_start`` measures the first steps instead.
    step_no = [1_000_000]
    start_no = [0]

    def nothing() -> None:
        pass

    @contextlib.contextmanager
    def bare() -> Iterator[tuple[Callable[[], None], Callable[[], None]]]:
        yield nothing, nothing

    @contextlib.contextmanager
    def watch(**kw: object) -> Iterator[tuple[Callable[[], None], Callable[[], None]]]:
        target: Any = kw.pop("run", run)
        counter = start_no if kw.pop("from_start", False) else step_no
        if counter is step_no:
            # Steady state: each block's untimed first step is a full-statistics step (a multiple of
            # 10), which allocates the monitor's buffers and logs the module tree, as a run's first
            # full step does once; the timed steps then hold the schedule's mix (one full step in 10).
            counter[0] = -(-counter[0] // 10) * 10
        with ns.watch(model, optimizer=opt, run=target, start_step=counter[0], **kw) as mon:

            def settle() -> None:  # the host batch and the store's writer catch up with the steps
                mon.flush()
                if target is not None:
                    target.flush()

            yield nothing, settle
        counter[0] += mon.step_count

    @contextlib.contextmanager
    def tb() -> Iterator[tuple[Callable[[], None], Callable[[], None]]]:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(tempfile.mkdtemp())

        def after() -> None:
            for n, p in model.named_parameters():
                if p.grad is not None:
                    writer.add_histogram(f"grad/{n}", p.grad, step_no[0])
            step_no[0] += 1

        try:
            yield after, writer.flush
        finally:
            writer.close()

    @contextlib.contextmanager
    def item() -> Iterator[tuple[Callable[[], None], Callable[[], None]]]:
        ave: list[float] = []
        mx: list[float] = []

        def after() -> None:
            ave.clear()
            mx.clear()
            for _, p in model.named_parameters():
                if p.requires_grad and p.grad is not None:
                    ave.append(p.grad.abs().mean().item())
                    mx.append(p.grad.abs().max().item())

        yield after, nothing

    Hooks = tuple[Callable[[], None], Callable[[], None]]
    makers: dict[str, Callable[[], contextlib.AbstractContextManager[Hooks]]] = {
        "bare": bare,
        "watch": watch,
        "watch_all": lambda: watch(heavy="always"),
        "watch_nostore": lambda: watch(run=None),
        "watch_nonan": lambda: watch(nan_origin=False),
        "watch_start": lambda: watch(from_start=True),
        "tb_histograms": tb,
        "item_recipe": item,
    }
    times: dict[str, list[float]] = {v: [] for v in variants}
    faults: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(2):  # warm up every variant
        for v in variants:
            with makers[v]() as (after, settle):
                train_step()
                after()
                settle()
    sync(device)
    for _ in range(repeats):
        order = list(variants)
        random.shuffle(order)
        for v in order:
            with makers[v]() as (after, settle):
                train_step()  # first step in the block untimed (hooks, buffers, tree)
                after()
                settle()
                sync(device)
                f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
                t0 = time.perf_counter()
                for _ in range(steps):
                    train_step()
                    after()
                # timed: the work these steps left for background threads (the monitor's host batch,
                # the store's and TensorBoard's writers), which would otherwise spill into the next
                # variant's block
                settle()
                sync(device)
                times[v].append((time.perf_counter() - t0) / steps)
                faults[v].append((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / steps)
    run.close()
    tmp.cleanup()
    base = statistics.median(times["bare"]) if "bare" in times else math.nan
    print(f"\n## {name}, batch {batch}" + (f", {size}x{size}" if name.startswith("resnet") else ", 28x28"))
    print(f"{'variant':<15} {'ms/step':>9} {'ratio':>7} {'paired':>7} {'faults/step':>12}")
    for v in variants:
        med = statistics.median(times[v])
        # paired: the median over repeats of (this block / the bare block of the same repeat), which
        # cancels the machine's slow drifts that a ratio of medians keeps
        paired = (
            statistics.median(t / b for t, b in zip(times[v], times["bare"])) if "bare" in times else math.nan
        )
        flt = statistics.median(faults[v])
        print(f"{v:<15} {med * 1e3:9.2f} {med / base:7.3f} {paired:7.3f} {flt:12.0f}")


if __name__ == "__main__":
    main()
