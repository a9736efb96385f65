"""Reduction of one step's statistics across the ranks of ``torch.distributed``.

What is reduced, and why it equals the statistics of the global batch on one process:

- parameter statistics are read after DDP averaged the gradients, so every rank already holds the
  global gradient and the same weights: they are not reduced (rank 0's are written);
- activation moments ``(n, mean, M2)`` are gathered and pooled with Chan's parallel formula; counts of
  zeros and saturated outputs are summed; histograms are summed;
- the error signal: with a loss averaged per rank and DDP's gradient average, the global loss is the
  mean of the ranks' losses, so ``∂L/∂a = (1/W) ∂L_r/∂a`` on rank ``r`` and
  ``||δ||^2 = Σ_r ||δ_r||^2 / W^2``;
- dead units: a unit is alive if it was non-zero on any rank (a MAX all-reduce of the flags);
- the first non-finite call: the minimum sequence number over ranks.
"""

from __future__ import annotations

import numpy as np
import torch

from ._activations import TapHost, combine_moments


def world() -> tuple[int, int]:
    """``(rank, world_size)``; ``(0, 1)`` outside an initialised process group."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def reduce_tap(
    step: TapHost, hist: torch.Tensor | None, world_size: int, device: torch.device
) -> tuple[TapHost, torch.Tensor | None]:
    """The tap's step pooled over all ranks (one all-gather of a small float64 vector)."""
    import torch.distributed as dist

    la = step.act.shape[0]
    host = np.concatenate([step.act.reshape(-1), step.delta_sq, [step.fwd_bad, step.bwd_bad]])
    parts = [torch.from_numpy(host).to(device)]
    if hist is not None:
        parts.append(hist.reshape(-1).to(device, torch.float64))
    flat = torch.cat(parts)
    gathered = [torch.empty_like(flat) for _ in range(world_size)]
    dist.all_gather(gathered, flat)
    allr = torch.stack(gathered).cpu().numpy()  # [W, len]
    act = allr[:, : la * 5].reshape(world_size * la, 5)
    idx = np.tile(np.arange(la), world_size)
    pooled = combine_moments(idx, la, act[:, 0], act[:, 1], act[:, 2], sums=act[:, 3:])
    off = la * 5
    dsq = allr[:, off : off + la]
    got = ~np.isnan(dsq).all(axis=0)
    delta_sq = np.where(got, np.nan_to_num(dsq, nan=0.0).sum(0) / world_size**2, np.nan)
    off += la
    fwd_bad = float(allr[:, off].min())
    bwd_bad = float(allr[:, off + 1].min())
    off += 2
    out_hist = None
    if hist is not None:
        out_hist = torch.from_numpy(allr[:, off:].sum(0).reshape(tuple(hist.shape)))
    return TapHost(pooled, delta_sq, fwd_bad, bwd_bad, step.fwd_names, step.bwd_names), out_hist


def all_reduce_max(t: torch.Tensor) -> torch.Tensor:
    import torch.distributed as dist

    out = t.clone()
    dist.all_reduce(out, op=dist.ReduceOp.MAX)
    return out
