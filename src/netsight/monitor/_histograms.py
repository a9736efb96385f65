"""Per-layer histograms of many tensors in one pass of element-wise ops and one weighted ``bincount``.

Each tensor is sampled with an even stride down to at most ``sample`` elements (its counts are then
scaled by ``numel / sampled``, as :class:`netsight.capture.reducers.Histogram` does for one tensor),
the samples of all tensors are concatenated, and ``bincount(layer * (E + 1) + bin)`` gives the
``[L, E + 1]`` counts of every layer at once.

Bins are exactly those of ``torch.bucketize(v, edges, right=True)`` (bin 0 below ``edges[0]``, bin ``E``
at or above ``edges[-1]``), found with a lookup table on the top 16 bits of each float32 (sign,
exponent and 7 mantissa bits): all floats sharing those bits lie in one interval of relative width
2⁻⁷, so when no such interval holds two edges (any edges at most ~36 per decade apart, the
log-spaced ones of :func:`netsight.capture.reducers.log_edges` included), the bin is
``base[key] + (v >= edge[key])``: a shift, two gathers from 65,536-entry tables and one comparison.
Both ``bucketize``'s binary search and an arithmetic ``log10`` estimate cost 15-20 ns per element on
a CPU; this costs about 2. Edges that put two in one interval fall back to ``bucketize``.
NaN is not counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

_KEYS = 1 << 16


@dataclass(frozen=True)
class LogBins:
    """Bin finder for sorted ``edges`` (named for the log-spaced edges it is used with; any work)."""

    edges: torch.Tensor  # float64, sorted
    _tables: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] | None = field(
        init=False, default=None, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "_tables", self._build())

    @property
    def bins(self) -> int:
        return int(self.edges.numel()) + 1

    def _build(self) -> dict[torch.device, tuple[torch.Tensor, torch.Tensor]] | None:
        """``{cpu: (base, threshold)}`` indexed by ``(bits >> 16) + 32768``, or ``None`` (bucketize)."""
        edges = self.edges.to(torch.float32)
        if edges.numel() == 0 or bool(torch.isnan(edges).any()):
            return None
        hi16 = (torch.arange(_KEYS, dtype=torch.int64) - _KEYS // 2) & 0xFFFF
        first = _floats(hi16 << 16)  # the bucket's bit patterns ...0000 and ...FFFF: its two ends
        last = _floats((hi16 << 16) | 0xFFFF)
        # NaN patterns (exponent all ones): only +-inf (mantissa 0, the ``first`` end) are ever looked up
        first = torch.where(torch.isnan(first), last, first)
        last = torch.where(torch.isnan(last), first, last)
        lo, hi = torch.minimum(first, last), torch.maximum(first, last)
        base = torch.bucketize(lo, edges, right=True)
        span = torch.bucketize(hi, edges, right=True) - base
        if int(span.max()) > 1:
            return None
        # one edge inside (lo, hi]: v >= edge adds one; none: NaN, which no comparison passes
        thr = torch.where(span == 1, edges[base.clamp(max=edges.numel() - 1)], torch.tensor(float("nan")))
        return {torch.device("cpu"): (base, thr)}

    def _on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor] | None:
        tables = self._tables
        if tables is None:
            return None
        got = tables.get(device)
        if got is None:
            base, thr = tables[torch.device("cpu")]
            got = tables[device] = (base.to(device), thr.to(device))
        return got

    def index(self, v: torch.Tensor) -> torch.Tensor:
        """``torch.bucketize(v, edges, right=True)`` (int64) for float32 ``v`` without NaN."""
        tables = self._on(v.device) if v.dtype == torch.float32 else None
        if tables is None:
            return torch.bucketize(v.contiguous(), self.edges.to(v.device, v.dtype), right=True)
        base, thr = tables
        flat = v.reshape(-1)
        key = (flat.view(torch.int32) >> 16).long().add_(_KEYS // 2)
        idx = torch.index_select(base, 0, key)
        idx += flat >= torch.index_select(thr, 0, key)
        return idx.view(v.shape)


def _floats(bits: torch.Tensor) -> torch.Tensor:
    """The float32 values of 32-bit patterns given as non-negative int64."""
    return torch.where(bits >= 1 << 31, bits - (1 << 32), bits).to(torch.int32).view(torch.float32)


def sample_view(t: torch.Tensor, sample: int | None) -> tuple[torch.Tensor, float]:
    """A view of at most ``sample`` evenly strided elements of ``t`` (flattened), and the count scale."""
    v = t.detach().reshape(-1)
    n = v.numel()
    if sample is not None and n > sample:
        v = v[:: n // sample]
    return v, (n / v.numel() if v.numel() else 1.0)


def sample_many(tensors: list[torch.Tensor], sample: int | None) -> tuple[list[torch.Tensor], list[float]]:
    """:func:`sample_view` of many tensors, copied into one float32 allocation (one copy, not one small
    allocation per tensor), returned as views into it, and their count scales."""
    taken = [sample_view(t, sample) for t in tensors]
    if not taken:
        return [], []
    flat = torch.cat([v.to(torch.float32) for v, _ in taken])
    return list(torch.split(flat, [v.numel() for v, _ in taken])), [c for _, c in taken]


def histograms_of_samples(
    samples: list[torch.Tensor], scales: list[float], owner: list[int], layers: int, bins: LogBins
) -> torch.Tensor:
    """``[layers, len(edges) + 1]`` float64 counts of the samples (taken by :func:`sample_many`), each
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
