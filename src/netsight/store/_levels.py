"""Coarse levels: per-bucket min, max, sum, count and last value, kept so reads never scan raw rows.

Level ``k`` cuts the step axis into buckets of ``2**k`` steps (bucket ``b`` holds steps
``b * 2**k .. (b + 1) * 2**k - 1``). The writer builds the levels as a cascade: raw values go into the
finest level's current bucket; when a bucket is complete (a step in another bucket arrives) it is written
and merged into its parent on the next level, so each logged step costs a constant amount of work
whatever the number of levels. The current (incomplete) bucket of each level is written only at
``close()``; readers take the part of a range not yet covered by complete buckets from the raw rows.

Levels ignore NaN (a missing value): min/max are ``fmin``/``fmax``, the count excludes NaN and "last"
is the last non-NaN value. Steps are expected not to decrease: a step lower than the last one logged is
kept in the raw rows but not folded into the levels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

__all__ = ["LEVELS", "LayerBucket", "ScalarBucket", "choose_level", "minmax_downsample"]

F32 = npt.NDArray[np.float32]
U32 = npt.NDArray[np.uint32]
A = TypeVar("A", bound=npt.NDArray[Any])

#: the bucket widths kept, as powers of two: 16 steps up to 4,194,304 steps
LEVELS: tuple[int, ...] = tuple(range(4, 23))


def choose_level(span: int, buckets: int) -> int | None:
    """The finest level whose buckets cut ``span`` steps into at most ``buckets`` pieces."""
    for k in LEVELS:
        if (span >> k) + 1 <= buckets:
            return k
    return None


def _pad(a: A, n: int, fill: float) -> A:
    if a.shape[0] >= n:
        return a
    out = np.full(n, fill, dtype=a.dtype)
    out[: a.shape[0]] = a
    return out  # type: ignore[return-value]


@dataclass
class LayerBucket:
    """The running aggregate of one bucket of per-layer values (vectors indexed by layer)."""

    bucket: int
    first_step: int
    last_step: int
    n: int
    mn: F32
    mx: F32
    sm: F32
    cnt: U32
    last: F32
    #: raw vectors added since the arrays were last brought up to date (folded in one vectorised pass)
    pending: list[F32] = field(default_factory=list)

    @classmethod
    def of(cls, bucket: int, step: int, v: F32) -> LayerBucket:
        ok = ~np.isnan(v)
        return cls(
            bucket,
            step,
            step,
            1,
            v.copy(),
            v.copy(),
            np.where(ok, v, 0).astype(np.float32),
            ok.astype(np.uint32),
            v.copy(),
        )

    def _grow(self, n: int) -> None:
        if self.mn.shape[0] < n:
            self.mn = _pad(self.mn, n, np.nan)
            self.mx = _pad(self.mx, n, np.nan)
            self.sm = _pad(self.sm, n, 0.0)
            self.cnt = _pad(self.cnt, n, 0)
            self.last = _pad(self.last, n, np.nan)

    def add(self, step: int, v: F32) -> None:
        """Add one raw step's vector (folded into the arrays when the bucket is read or merged)."""
        self.pending.append(v)
        self.last_step = step
        self.n += 1

    def fold(self) -> None:
        """Bring min/max/sum/count/last up to date with the pending vectors, in one pass."""
        if not self.pending:
            return
        n = max(self.mn.shape[0], *(p.shape[0] for p in self.pending))
        self._grow(n)
        block = np.stack([p if p.shape[0] == n else _pad(p, n, np.nan) for p in self.pending])  # [k, L]
        self.pending = []
        ok = ~np.isnan(block)
        np.fmin(self.mn, np.fmin.reduce(block, axis=0), out=self.mn)
        np.fmax(self.mx, np.fmax.reduce(block, axis=0), out=self.mx)
        self.sm += np.where(ok, block, np.float32(0)).sum(axis=0, dtype=np.float32)
        self.cnt += ok.sum(axis=0, dtype=np.uint32)
        last_row = np.where(ok, np.arange(block.shape[0])[:, None], -1).max(axis=0)
        has = np.flatnonzero(last_row >= 0)
        self.last[has] = block[last_row[has], has]

    def merge(self, other: LayerBucket) -> None:
        """Fold a complete, later bucket of the level below in."""
        self.fold()
        other.fold()
        n = max(self.mn.shape[0], other.mn.shape[0])
        self._grow(n)
        o_mn, o_mx = _pad(other.mn, n, np.nan), _pad(other.mx, n, np.nan)
        o_sm, o_cnt, o_last = _pad(other.sm, n, 0.0), _pad(other.cnt, n, 0), _pad(other.last, n, np.nan)
        np.fmin(self.mn, o_mn, out=self.mn)
        np.fmax(self.mx, o_mx, out=self.mx)
        self.sm += o_sm
        self.cnt += o_cnt
        np.copyto(self.last, o_last, where=~np.isnan(o_last))
        self.last_step = other.last_step
        self.n += other.n

    def row(
        self, key_id: int, level: int
    ) -> tuple[int, int, int, int, int, int, bytes, bytes, bytes, bytes, bytes]:
        """The ``layer_levels`` row of this bucket."""
        self.fold()
        return (
            key_id,
            level,
            self.bucket,
            self.first_step,
            self.last_step,
            self.n,
            self.mn.tobytes(),
            self.mx.tobytes(),
            self.sm.tobytes(),
            self.cnt.tobytes(),
            self.last.tobytes(),
        )

    @classmethod
    def from_row(  # noqa: PLR0917 - one argument per column of a layer_levels row
        cls,
        bucket: int,
        first: int,
        last_step: int,
        n: int,
        mn: bytes,
        mx: bytes,
        sm: bytes,
        cnt: bytes,
        last: bytes,
    ) -> LayerBucket:
        return cls(
            bucket,
            first,
            last_step,
            n,
            np.frombuffer(mn, np.float32).copy(),
            np.frombuffer(mx, np.float32).copy(),
            np.frombuffer(sm, np.float32).copy(),
            np.frombuffer(cnt, np.uint32).copy(),
            np.frombuffer(last, np.float32).copy(),
        )


@dataclass
class ScalarBucket:
    """The running aggregate of one bucket of a scalar series (keeps where its min and max were)."""

    bucket: int
    first_step: int
    last_step: int
    n: int
    mn: float | None
    mn_step: int | None
    mx: float | None
    mx_step: int | None
    sm: float
    cnt: int
    last: float | None

    @classmethod
    def of(cls, bucket: int, step: int, v: float) -> ScalarBucket:
        if math.isnan(v):  # NaN: a step without a value
            return cls(bucket, step, step, 1, None, None, None, None, 0.0, 0, None)
        return cls(bucket, step, step, 1, v, step, v, step, v, 1, v)

    def add(self, step: int, v: float) -> None:
        self.last_step = step
        self.n += 1
        if math.isnan(v):
            return
        if self.mn is None or v < self.mn:
            self.mn, self.mn_step = v, step
        if self.mx is None or v > self.mx:
            self.mx, self.mx_step = v, step
        self.sm += v
        self.cnt += 1
        self.last = v

    def merge(self, other: ScalarBucket) -> None:
        if other.mn is not None and (self.mn is None or other.mn < self.mn):
            self.mn, self.mn_step = other.mn, other.mn_step
        if other.mx is not None and (self.mx is None or other.mx > self.mx):
            self.mx, self.mx_step = other.mx, other.mx_step
        self.sm += other.sm
        self.cnt += other.cnt
        if other.last is not None:
            self.last = other.last
        self.last_step = other.last_step
        self.n += other.n

    def row(self, key_id: int, level: int) -> tuple[object, ...]:
        return (
            key_id,
            level,
            self.bucket,
            self.first_step,
            self.last_step,
            self.n,
            self.mn,
            self.mn_step,
            self.mx,
            self.mx_step,
            self.sm,
            self.cnt,
            self.last,
        )


def minmax_downsample(
    steps: npt.NDArray[np.int64], values: npt.NDArray[np.float64], max_points: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Keep at most ``max_points`` points: the min and the max of each of ``max_points // 2`` buckets.

    Buckets are equal runs of points; within a bucket the min and the max are kept at their own steps,
    in step order, so every spike (up or down) survives. NaN points are dropped from buckets that have
    finite ones. Series of ``max_points`` points or fewer come back unchanged.

    This is the min/max half of M4 aggregation (Jugel et al., "M4: A Visualization-Oriented Time Series
    Data Aggregation", VLDB 2014): a line drawn through the kept points has the same vertical extent
    in every bucket as the full series.
    """
    n = steps.shape[0]
    if n <= max_points:
        return steps, values
    nb = max(1, max_points // 2)
    bounds = np.linspace(0, n, nb + 1).astype(np.int64)
    starts = bounds[:-1]
    filled = np.where(np.isnan(values), np.inf, values)
    imin = _segment_arg(filled, starts, n, np.minimum)
    filled = np.where(np.isnan(values), -np.inf, values)
    imax = _segment_arg(filled, starts, n, np.maximum)
    keep = np.unique(np.concatenate([imin, imax]))
    return steps[keep], values[keep]


def _segment_arg(
    values: npt.NDArray[np.float64], starts: npt.NDArray[np.int64], n: int, op: np.ufunc
) -> npt.NDArray[np.int64]:
    """Per segment ``[starts[i], starts[i+1])``, the index of its first extreme (op=minimum|maximum)."""
    ext = op.reduceat(values, starts)
    seg = np.repeat(np.arange(starts.shape[0]), np.diff(np.append(starts, n)))
    hit = values == ext[seg]
    idx = np.flatnonzero(hit)
    # first hit in each segment
    first = np.full(starts.shape[0], -1, dtype=np.int64)
    seg_of_hit = seg[idx]
    order = np.unique(seg_of_hit, return_index=True)
    first[order[0]] = idx[order[1]]
    first[first < 0] = starts[first < 0]
    return first
