"""Watch data-parallel training (two CPU processes on gloo), and send the run to TensorBoard as well.

python docs/examples/monitor_distributed.py

Each rank watches its DistributedDataParallel model as usual; the monitor pools its statistics over
the ranks (sums, counts and maxima all-reduced, histograms summed), so rank 0 writes what one process
would have measured on the global batch. TensorBoard needs ``pip install 'netsight[tensorboard]'``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

import netsight as ns
from netsight.data import load_mnist
from netsight.store.tensorboard import Tee, TensorBoardSink

WORLD = 2
STEPS = 24


def train(rank: int, rendezvous: str) -> None:
    dist.init_process_group("gloo", init_method=rendezvous, rank=rank, world_size=WORLD)
    try:
        torch.manual_seed(0)  # the same initial weights on every rank (DDP also broadcasts them)
        conv = nn.Conv2d(1, 8, 3, padding=1)
        model = nn.Sequential(conv, nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8 * 14 * 14, 10))
        ddp = nn.parallel.DistributedDataParallel(model)
        opt = torch.optim.SGD(ddp.parameters(), lr=0.05, momentum=0.9)
        x, y = load_mnist()
        mine = torch.randperm(len(x), generator=torch.Generator().manual_seed(rank))  # this rank's shard

        # rank 0 writes, to the run store and to TensorBoard; the other ranks only take part in the
        # reductions (run=None). distributed="per_rank" would let every rank write its own run.
        run = None
        if rank == 0:
            run = Tee(ns.open_run("netsight-runs", name="ddp-cnn"), TensorBoardSink("tb-logs"))
        with ns.watch(ddp, optimizer=opt, run=run, stats=4):
            for step in range(STEPS):
                idx = mine[step * 32 : (step + 1) * 32]
                loss = F.cross_entropy(ddp(x[idx]), y[idx])
                opt.zero_grad()
                loss.backward()  # DDP averages the gradients over the ranks here
                opt.step()  # the monitor collects here, on every rank
                if run is not None:
                    run.log({"loss": loss}, step=step)
        if run is not None:
            run.close()
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":  # the processes are spawned, so the entry point must be guarded
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(train, args=(f"file://{Path(tmp) / 'rendezvous'}",), nprocs=WORLD, join=True)

    r = ns.store.open("netsight-runs").run("ddp-cnn")
    names, steps, grad_norm = r.layer_matrix("grad_norm")
    print(f"{len(steps)} steps of {names} written by rank 0; alerts: {r.alerts()}")
    names, steps, zeros = r.layer_matrix("act_zero_frac")  # pooled over both ranks' samples
    print("fraction of zeros after the ReLU:", zeros[names.index("1")].round(3))
    print("TensorBoard event files:", sorted(p.name[:24] for p in Path("tb-logs").iterdir()))
    print("view them with: tensorboard --logdir tb-logs")
