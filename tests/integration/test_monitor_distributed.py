"""Two CPU processes on gloo (DDP): the statistics the monitor reduces across ranks equal those of the
same global batch on one process."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

import netsight as ns
from netsight.monitor import METRICS

WORLD = 2
BATCH = 8  # global; 4 per rank


def make_model() -> nn.Module:
    torch.manual_seed(0)
    # no batch norm: without SyncBatchNorm each rank would normalise with its own half of the batch
    return nn.Sequential(
        nn.Conv2d(1, 4, 3),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3),
        nn.Tanh(),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 3),
    )


def data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(BATCH, 1, 8, 8, generator=g) * 2, torch.randint(0, 3, (BATCH,), generator=g)


OPTIONS = {"stats": 1, "heavy": "always", "hist_sample": None, "dead_window": 2}


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, mon_model: nn.Module) -> ns.Monitor:
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with ns.watch(mon_model, optimizer=opt, **OPTIONS) as mon:
        for _ in range(2):
            F.cross_entropy(mon_model(x), y).backward()
            opt.step()
            opt.zero_grad()
    return mon


def worker(rank: int, init: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=WORLD)
    try:
        model = make_model()
        ddp = nn.parallel.DistributedDataParallel(model)
        x, y = data()
        part = slice(rank * BATCH // WORLD, (rank + 1) * BATCH // WORLD)
        mon = train(model, x[part], y[part], ddp)
        assert ns.hooks_on(model) == {}
        if rank == 0:
            np.save(out + ".values.npy", mon.last.values)
            np.save(out + ".act_hist.npy", mon.last.hists["activation"][1])
            (Path(out + ".layers.txt")).write_text("\n".join(mon.layers))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_ranks_match_one_process_on_the_global_batch(tmp_path: Path) -> None:
    out = str(tmp_path / "rank0")
    mp.spawn(worker, args=(f"file://{tmp_path / 'init'}", out), nprocs=WORLD, join=True)
    got = np.load(out + ".values.npy")
    got_hist = np.load(out + ".act_hist.npy")
    layers = (tmp_path / "rank0.layers.txt").read_text().split("\n")

    model = make_model()
    x, y = data()
    mon = train(model, x, y, model)
    assert layers == mon.layers
    want = mon.last.values
    for j, metric in enumerate(METRICS):
        np.testing.assert_allclose(got[:, j], want[:, j], rtol=1e-5, atol=1e-7, err_msg=metric)
    assert np.isfinite(want[:, METRICS.index("delta_norm")]).all()
    assert np.isfinite(want[:, METRICS.index("dead_frac")]).any()  # the ReLU's window closed at step 1
    np.testing.assert_allclose(got_hist, mon.last.hists["activation"][1])
