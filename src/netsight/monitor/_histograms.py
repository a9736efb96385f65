"""Per-layer histograms of many tensors in one pass of element-wise ops and one weighted ``bincount``.

Each tensor is sampled with an even stride down to at most ``sample`` elements (its counts are then
scaled by ``numel / sampled``, as :class:`netsight.capture.reducers.Histogram` does for one tensor),
the samples of all tensors are concatenated, and ``bincount(layer * (E + 1) + bin)`` gives the
``[L, E + 1]`` counts of every layer at once.

Bins are exactly those of ``torch.bucketize(v, edges, right=True)`` (bin 0 below ``edges[0]``, bin ``E``
at or above ``edges[-1]``), but found arithmetically for the log-spaced edges of
:func:`netsight.capture.reducers.log_edges`: an estimate from ``log10 |v|``, then one comparison with
the two neighbouring edges makes it exact. ``bucketize``'s binary search costs ~300 ns per element on a
CPU; this costs a few. Other edges fall back to ``bucketize``. NaN is not counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class LogBins:
    """Bin finder for ``edges``; arithmetic when they are ``log_edges(lo, hi, per_decade, signed=True)``."""

    edges: torch.Tensor  # float64, sorted
    layout: tuple[int, float, float] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        object.__setattr__(self, "layout", self._layout())

    @property
    def bins(self) -> int:
        return int(self.edges.numel()) + 1

    def _layout(self) -> tuple[int, float, float] | None:
        e = self.edges.double()
        n = e.numel()
        if n < 4 or n % 2:
            return None
        k = n // 2
        pos = e[k:]
        if not torch.equal(-pos.flip(0), e[:k]) or bool((pos <= 0).any()):
            return None
        logs = pos.log10()
        step = (logs[-1] - logs[0]) / (k - 1)
        if not torch.allclose(logs, logs[0] + step * torch.arange(k, dtype=torch.float64), atol=1e-9):
            return None
        return k, float(logs[0]), float(step)

    def index(self, v: torch.Tensor) -> torch.Tensor:
        """``torch.bucketize(v, edges, right=True)`` for float32 ``v`` without NaN."""
        edges = self.edges.to(v.device, torch.float32)
        layout = self.layout
        if layout is None:
            return torch.bucketize(v, edges, right=True)
        k, lo, step = layout
        a = v.abs().clamp_min(1e-38).log10_().sub_(lo).div_(step)
        # pos edges <= |v|: floor(a) + 1, clamped to [0, k]
        below = a.floor_().add_(1).clamp_(0, k)
        idx = torch.where(v >= 0, below + k, k - below).long()
        padded = torch.cat(
            [
                torch.full((1,), -math.inf, device=v.device),
                edges,
                torch.full((1,), math.inf, device=v.device),
            ]
        )
        idx = idx.clamp_(0, self.bins - 1)
        idx += (v >= padded[idx + 1]).long()
        idx -= (v < padded[idx]).long()
        return idx.clamp_(0, self.bins - 1)  # +inf: the last bin, as bucketize puts it


def sample_view(t: torch.Tensor, sample: int | None) -> tuple[torch.Tensor, float]:
    """A view of at most ``sample`` evenly strided elements of ``t`` (flattened), and the count scale."""
    v = t.detach().reshape(-1)
    n = v.numel()
    if sample is not None and n > sample:
        v = v[:: n // sample]
    return v, (n / v.numel() if v.numel() else 1.0)


def sample_flat(t: torch.Tensor, sample: int | None) -> tuple[torch.Tensor, float]:
    """A float32 copy of at most ``sample`` evenly strided elements of ``t``, and the count scale."""
    v, scale = sample_view(t, sample)
    return v.to(torch.float32, copy=True), scale


def sample_many(tensors: list[torch.Tensor], sample: int | None) -> tuple[list[torch.Tensor], list[float]]:
    """:func:`sample_flat` of many tensors, copied into one float32 allocation (one copy, not one small
    allocation per tensor), returned as views into it."""
    taken = [sample_view(t, sample) for t in tensors]
    if not taken:
        return [], []
    flat = torch.cat([v.to(torch.float32) for v, _ in taken])
    return list(torch.split(flat, [v.numel() for v, _ in taken])), [c for _, c in taken]


def histograms_of_samples(
    samples: list[torch.Tensor], scales: list[float], owner: list[int], layers: int, bins: LogBins
) -> torch.Tensor:
    """``[layers, len(edges) + 1]`` float64 counts of the samples (taken by :func:`sample_flat`), each
    weighted by its ``scales`` entry and pooled by ``owner`` (layer index)."""
    nb = bins.bins
    if not samples:
        return torch.zeros((layers, nb), dtype=torch.float64, device=bins.edges.device)
    dev = samples[0].device
    lens = torch.tensor([s.numel() for s in samples], device=dev)
    v = torch.cat([s.to(dev) for s in samples])
    nan = torch.isnan(v)
    # counts per sample first (integer keys, no per-element weights), then scaled and pooled by layer
    keys = torch.repeat_interleave(torch.arange(len(samples), device=dev) * nb, lens)
    keys += bins.index(v.nan_to_num(0.0))
    keys.masked_fill_(nan, len(samples) * nb)  # NaN goes to a spare slot that is dropped
    per = torch.bincount(keys, minlength=len(samples) * nb + 1)[:-1].reshape(len(samples), nb)
    per = per.double() * torch.tensor(scales, dtype=torch.float64, device=dev)[:, None]
    out = torch.zeros((layers, nb), dtype=torch.float64, device=dev)
    return out.index_add_(0, torch.tensor(owner, dtype=torch.long, device=dev), per)
