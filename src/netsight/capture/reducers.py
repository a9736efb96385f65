"""Reducers: pure functions ``tensor -> small summary`` that run on the tensor's device.

The capture's ``reduce=``, the monitor's statistics, the attention reductions and the dashboard's
histograms all use these. None of them synchronises with the device except where noted (on the CPU a
host read is free, so the CPU path skips passes it can prove unnecessary).

Registry: :func:`get_reducer` by name (``"stats"``, ``"hist"``, ``"topk"``, ``"downsample"``), and the
classes for parameterised versions (``Histogram(edges)``, ``TopK(k=8)``, ``Downsample(size=16)``).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn.functional as F

from ..errors import ArgumentError, UnknownNameError, closest

__all__ = [
    "STAT_NAMES",
    "Downsample",
    "Histogram",
    "Reducer",
    "Stats",
    "TopK",
    "get_reducer",
    "list_reducers",
    "log_edges",
    "stats",
    "stats_dict",
    "stats_many",
]

#: The order of the values in a statistics vector returned by :func:`stats`.
STAT_NAMES: tuple[str, ...] = (
    "mean",
    "std",
    "min",
    "max",
    "abs_mean",
    "l2",
    "zero_frac",
    "nan_count",
    "inf_count",
)

_ROW = 8192  # row length of the two-level sums: exact enough in fp32, combined in fp64


@runtime_checkable
class Reducer(Protocol):
    """A named callable that turns one tensor into a small summary on the same device."""

    @property
    def name(self) -> str: ...

    def __call__(self, x: torch.Tensor) -> Any: ...


def _flat(x: torch.Tensor) -> torch.Tensor:
    """A 1-D view of every element (no copy for contiguous or channels-last tensors)."""
    if x.is_contiguous():
        return x.view(-1)
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
        return x.permute(0, 2, 3, 1).reshape(-1)
    return x.reshape(-1)


def _sum_and_m2(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sum, sum of squares and M2 = sum((v - mean)^2), in float64, from row-wise float32 passes.

    Row sums of at most 8,192 elements keep fp32 accurate; rows are combined in fp64 with Chan's
    parallel formula, so the variance stays accurate when the mean is large against the spread.
    """
    n = v.numel()
    acc = torch.float32 if v.dtype != torch.float64 else torch.float64
    rows = n // _ROW
    parts_s: list[torch.Tensor] = []
    parts_q: list[torch.Tensor] = []
    counts: list[int] = []
    if rows:
        m = v[: rows * _ROW].view(rows, _ROW)
        parts_s.append(m.sum(dim=1, dtype=acc).double())
        parts_q.append(torch.linalg.vector_norm(m, 2, dim=1, dtype=acc).double().square())
        counts.append(_ROW)
    tail = v[rows * _ROW :]
    if tail.numel():
        parts_s.append(tail.sum(dtype=acc).double().reshape(1))
        parts_q.append(torch.linalg.vector_norm(tail, 2, dtype=acc).double().square().reshape(1))
        counts.append(tail.numel())
    if len(counts) == 2:
        cnt = torch.cat(
            [
                torch.full((rows,), float(_ROW), dtype=torch.float64, device=v.device),
                torch.full((1,), float(counts[1]), dtype=torch.float64, device=v.device),
            ]
        )
    else:
        cnt = torch.full((parts_s[0].numel(),), float(counts[0]), dtype=torch.float64, device=v.device)
    s_rows = torch.cat(parts_s)
    q_rows = torch.cat(parts_q)
    total = s_rows.sum()
    mean = total / n
    row_mean = s_rows / cnt
    m2 = (q_rows - s_rows * row_mean).clamp_min(0).sum() + (cnt * (row_mean - mean).square()).sum()
    return total, q_rows.sum(), m2


_CHUNK = 1 << 20  # elements per cache-sized chunk of the CPU pass (4 MB in fp32)
_scratch = threading.local()


def _buffer(dtype: torch.dtype, role: str) -> torch.Tensor:
    """A reused chunk-sized scratch tensor per thread, dtype and role."""
    bufs: dict[tuple[torch.dtype, str], torch.Tensor] | None = getattr(_scratch, "bufs", None)
    if bufs is None:
        bufs = _scratch.bufs = {}
    buf = bufs.get((dtype, role))
    if buf is None:
        buf = bufs[(dtype, role)] = torch.empty(_CHUNK, dtype=dtype)
    return buf


def _cpu_nonzero_and_l1(v: torch.Tensor, need_l1: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Count of non-zeros and sum of |v| in one cache-blocked sweep, with no large allocation.

    Per chunk: ``s = sign(c)`` into a reused buffer, then ``s . s`` (non-zeros, exact in fp32 for
    chunk-sized sums) and ``s . c`` (sum of |c|), both BLAS dot products on data still in cache.
    """
    work = v.dtype if v.dtype in (torch.float32, torch.float64) else torch.float32
    sign = _buffer(work, "sign")
    conv = _buffer(torch.float32, "convert") if work != v.dtype else None
    nz = torch.zeros((), dtype=torch.float64)
    l1 = torch.zeros((), dtype=torch.float64)
    n = v.numel()
    for start in range(0, n, _CHUNK):
        c = v[start : start + _CHUNK]
        k = c.numel()
        if conv is not None:
            c = conv[:k].copy_(c)
        b = sign[:k]
        torch.sign(c, out=b)
        nz += torch.dot(b, b).double()
        if need_l1:
            l1 += torch.dot(b, c).double()
    return nz, (l1 if need_l1 else None)


def stats(x: torch.Tensor) -> torch.Tensor:
    """Statistics of every element of ``x`` as a float32 vector ordered like :data:`STAT_NAMES`.

    ``[mean, std, min, max, mean |x|, L2 norm, fraction of zeros, count of NaN, count of Inf]``,
    computed on ``x``'s device with no host synchronisation on accelerators. ``std`` is the sample
    standard deviation (n - 1). When ``x`` holds NaN or Inf the moments are NaN/Inf and the counts
    say how many. An empty tensor gives NaN moments and zero counts.

    On the CPU the passes are few and cache-blocked (row sums combined in fp64 for accuracy, one
    sweep for zeros and |x|); a host read there is free, so passes that cannot change the result
    (|x| of a non-negative tensor, NaN counts of a finite one) are skipped.
    """
    if not isinstance(x, torch.Tensor):
        raise ArgumentError(f"x: expected a tensor, got {type(x).__name__}. Pass a torch.Tensor.")
    dev = x.device
    n = x.numel()
    if n == 0:
        out = torch.full((len(STAT_NAMES),), math.nan, dtype=torch.float32, device=dev)
        out[6:] = 0.0
        return out
    if not x.is_floating_point():
        x = x.float()
    v = _flat(x.detach())
    mn, mx = torch.aminmax(v)
    if dev.type == "cpu":
        total, sumsq, m2 = _sum_and_m2(v)
        finite = bool(torch.isfinite(total) & torch.isfinite(sumsq))
        if finite and bool(m2 * 100 < sumsq):
            # the mean dominates the spread: the fast sums would cancel; recompute exactly (rare)
            v64 = v.double()
            m2 = v64.var(correction=0) * n
            total = v64.sum()
        nonneg = bool(mn >= 0)
        if finite and bool((mn > 0) | (mx < 0)):
            nonzero = torch.tensor(float(n), dtype=torch.float64)
            l1 = total.abs()
        else:
            nonzero, l1_opt = _cpu_nonzero_and_l1(v, need_l1=not nonneg)
            l1 = total if nonneg else l1_opt  # type: ignore[assignment]
        if finite:
            nan_c = inf_c = torch.zeros((), dtype=torch.float64)
        else:
            nan_c = torch.isnan(v).sum().double()
            inf_c = torch.isinf(v).sum().double()
            nonzero = torch.count_nonzero(v).double()
            l1 = torch.linalg.vector_norm(v, 1, dtype=torch.float32).double()
    else:
        # accelerators have bandwidth to spare: exact one-pass kernels, no host synchronisation
        vf = v if v.dtype in (torch.float32, torch.float64) else v.float()
        var, mu = torch.var_mean(vf, correction=0)
        total = mu.double() * n
        m2 = var.double() * n
        sumsq = torch.linalg.vector_norm(vf, 2).double().square()
        l1 = torch.linalg.vector_norm(vf, 1).double()
        nonzero = v.ne(0).sum().double()
        nan_c = torch.isnan(v).sum().double()
        inf_c = torch.isinf(v).sum().double()
    std = (m2 / (n - 1)).sqrt() if n > 1 else torch.zeros((), dtype=torch.float64, device=dev)
    return torch.stack(
        [
            (total / n).to(dev),
            std.to(dev),
            mn.double(),
            mx.double(),
            (l1 / n).to(dev),
            sumsq.sqrt().to(dev),
            ((n - nonzero) / n).to(dev),
            nan_c.to(dev),
            inf_c.to(dev),
        ]
    ).float()


def stats_many(xs: Sequence[torch.Tensor]) -> torch.Tensor:
    """:func:`stats` of each tensor, stacked to ``[len(xs), 9]`` on the first tensor's device."""
    if not xs:
        return torch.zeros((0, len(STAT_NAMES)), dtype=torch.float32)
    dev = xs[0].device
    return torch.stack([stats(x).to(dev) for x in xs])


def stats_dict(vector: torch.Tensor) -> dict[str, float]:
    """A statistics vector (or one row of :func:`stats_many`) as ``{name: float}``; one transfer."""
    values = vector.detach().to("cpu", torch.float64).tolist()
    return dict(zip(STAT_NAMES, values))


def log_edges(lo: float = 1e-8, hi: float = 1e4, per_decade: int = 4, signed: bool = True) -> torch.Tensor:
    """Fixed log-spaced bin edges from ``lo`` to ``hi`` (and mirrored below zero when ``signed``).

    Values with ``|v| < lo`` fall in the bin around zero; values beyond ``hi`` in the outer bins.
    """
    if not (0 < lo < hi):
        raise ArgumentError(f"lo, hi: need 0 < lo < hi, got lo={lo}, hi={hi}. Pass e.g. lo=1e-8, hi=1e4.")
    decades = math.log10(hi) - math.log10(lo)
    k = max(1, round(decades * per_decade)) + 1
    pos = torch.logspace(math.log10(lo), math.log10(hi), k, dtype=torch.float64)
    if not signed:
        return torch.cat([torch.zeros(1, dtype=torch.float64), pos])
    return torch.cat([-pos.flip(0), pos])


@dataclass(frozen=True)
class Stats:
    """The :func:`stats` reducer."""

    name: str = "stats"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return stats(x)


@dataclass(frozen=True)
class Histogram:
    """Counts of the elements in fixed bins: ``len(edges) + 1`` counts (under-, in-range, overflow).

    ``sample``: histogram at most this many elements, taken with an even stride (counts are then
    scaled to the tensor's size, and so are estimates). ``None`` counts every element exactly.
    NaN is not counted.
    """

    edges: torch.Tensor = field(default_factory=log_edges)
    sample: int | None = None
    name: str = "hist"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        v = _flat(x.detach())
        n = v.numel()
        scale = 1.0
        if self.sample is not None and n > self.sample:
            step = -(-n // self.sample)  # ceil: at most `sample` elements
            v = v[::step]
            scale = n / v.numel()
        edges = self.edges.to(device=v.device, dtype=torch.float32)
        idx = torch.bucketize(v.float().contiguous(), edges, right=True)
        idx = idx[~torch.isnan(v)] if v.is_floating_point() else idx
        counts = torch.bincount(idx, minlength=edges.numel() + 1).float()
        return counts * scale if scale != 1.0 else counts


@dataclass(frozen=True)
class TopK:
    """The ``k`` channels with the most energy (mean square), for ``[B, C, ...]`` activations.

    Returns ``{"indices": [k], "energy": [k], "maps": [B, k, ...]}`` (maps detached).
    """

    k: int = 8
    name: str = "topk"

    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if x.dim() < 2:
            raise ArgumentError(
                f"reduce: TopK needs a [batch, channels, ...] tensor, got shape {tuple(x.shape)}. "
                "Use 'stats' or 'hist' for this layer."
            )
        x = x.detach()
        dims = [d for d in range(x.dim()) if d != 1]
        energy = x.float().square().mean(dim=dims)
        k = min(self.k, energy.numel())
        val, idx = torch.topk(energy, k)
        return {"indices": idx, "energy": val, "maps": x.index_select(1, idx)}


@dataclass(frozen=True)
class Downsample:
    """Average-pool the spatial dimensions of ``[B, C, H, W]`` (or ``[B, C, L]``) to ``size``."""

    size: int | tuple[int, ...] = 16
    name: str = "downsample"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.detach()
        if x.dim() == 4:
            return F.adaptive_avg_pool2d(x.float(), self.size)  # type: ignore[arg-type]
        if x.dim() == 3:
            size = self.size if isinstance(self.size, int) else self.size[0]
            return F.adaptive_avg_pool1d(x.float(), size)
        if x.dim() == 5:
            return F.adaptive_avg_pool3d(x.float(), self.size)  # type: ignore[arg-type]
        return x.clone()  # not a view: an in-place op after the module must not change the summary


_REGISTRY: dict[str, Callable[[], Any]] = {
    "stats": Stats,
    "hist": Histogram,
    "histogram": Histogram,
    "topk": TopK,
    "downsample": Downsample,
}


def list_reducers() -> list[str]:
    """Names :func:`get_reducer` knows."""
    return sorted(_REGISTRY)


def get_reducer(spec: str | Reducer | Callable[[torch.Tensor], Any], *, argument: str = "reduce") -> Reducer:
    """A reducer from a name (``"stats"``), a reducer instance, or any ``tensor -> summary`` callable."""
    if isinstance(spec, str):
        try:
            made: Reducer = _REGISTRY[spec]()
        except KeyError:
            near = closest(spec, _REGISTRY)
            hint = f" Did you mean {', '.join(repr(n) for n in near)}?" if near else ""
            raise UnknownNameError(
                f"{argument}: unknown reducer {spec!r}.{hint} Known: {', '.join(list_reducers())}, "
                "or pass a callable tensor -> summary."
            ) from None
        return made
    if isinstance(spec, Reducer):
        return spec
    if callable(spec):
        return _Named(getattr(spec, "__name__", "custom"), spec)
    raise ArgumentError(
        f"{argument}: cannot use {type(spec).__name__} {spec!r} as a reducer. Pass a name "
        f"({', '.join(list_reducers())}) or a callable tensor -> summary."
    )


@dataclass(frozen=True)
class _Named:
    name: str
    fn: Callable[[torch.Tensor], Any]

    def __call__(self, x: torch.Tensor) -> Any:
        return self.fn(x)
