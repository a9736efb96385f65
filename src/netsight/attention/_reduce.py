"""Reductions of attention maps, applied on the device as each layer's map (or chunk of rows) is made.

A full map is ``[batch, heads, query, key]``; at 4,096 tokens and 12 heads that is 805 MB per layer in
fp32. A :class:`Reduction` keeps only what is asked for, chunk by chunk of query rows:

- ``heads``: chosen heads, in the order given;
- ``rows``: chosen query rows (the class token is row 0);
- ``mean_heads``: the average over the (chosen) heads, kept as one head;
- ``topk``: per query row, only the ``k`` largest keys (values and indices).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

import torch

from ..errors import ArgumentError

__all__ = ["Reduction", "ReduceSpec", "as_reduction"]


@dataclass(frozen=True)
class Reduction:
    """What to keep of each layer's attention map ``[B, H, Q, K]``.

    Attributes:
        heads: head indices to keep (``None``: all).
        rows: query rows to keep, e.g. ``(0,)`` for a class token (``None``: all; negatives count
            from the end, so ``(-1,)`` is the last token of a causal model).
        mean_heads: average the (chosen) heads into one, ``[B, 1, Q, K]``.
        topk: keep only the ``k`` largest keys of each query row (values and indices).
    """

    heads: tuple[int, ...] | None = None
    rows: tuple[int, ...] | None = None
    mean_heads: bool = False
    topk: int | None = None

    @property
    def is_full(self) -> bool:
        """True when nothing is reduced: the full map is kept."""
        return self.heads is None and self.rows is None and not self.mean_heads and self.topk is None

    def row_index(self, n_rows: int) -> torch.Tensor | None:
        """The kept query rows as sorted non-negative indices (``None``: all rows)."""
        if self.rows is None:
            return None
        idx = sorted({r % n_rows if -n_rows <= r < n_rows else _bad_row(r, n_rows) for r in self.rows})
        return torch.tensor(idx, dtype=torch.long)

    def head_index(self, n_heads: int) -> list[int] | None:
        if self.heads is None:
            return None
        for h in self.heads:
            if not -n_heads <= h < n_heads:
                raise ArgumentError(
                    f"reduce: heads={list(self.heads)} names head {h}, but the layer has {n_heads} heads "
                    f"(0..{n_heads - 1}). Pick heads in that range."
                )
        return [h % n_heads for h in self.heads]

    def select(self, probs: torch.Tensor, start: int, n_rows: int) -> torch.Tensor:
        """Heads, rows and head-mean of a chunk ``[B, H, q, K]`` whose first row is ``start``."""
        heads = self.head_index(probs.shape[1])
        if heads is not None:
            probs = probs[:, heads]
        rows = self.row_index(n_rows)
        if rows is not None:  # chosen on the host (no device sync), then one small transfer
            inside = rows[(rows >= start) & (rows < start + probs.shape[2])] - start
            probs = probs.index_select(2, inside.to(probs.device))
        if self.mean_heads:
            probs = probs.mean(dim=1, keepdim=True)
        return probs

    def describe(self) -> str:
        if self.is_full:
            return "full"
        parts = []
        if self.heads is not None:
            parts.append(f"heads={list(self.heads)}")
        if self.rows is not None:
            parts.append(f"rows={list(self.rows)}")
        if self.mean_heads:
            parts.append("mean_heads")
        if self.topk is not None:
            parts.append(f"topk={self.topk}")
        return ", ".join(parts)


def _bad_row(r: int, n: int) -> int:
    raise ArgumentError(
        f"reduce: rows names query row {r}, but the map has {n} query rows. Pick rows in -{n}..{n - 1}."
    )


ReduceSpec = Union[None, str, Reduction, Mapping[str, Any]]  # noqa: UP007 - a runtime alias

_NAMED = {
    "mean": Reduction(mean_heads=True),
    "cls": Reduction(rows=(0,)),
    "cls_mean": Reduction(rows=(0,), mean_heads=True),
    "last": Reduction(rows=(-1,)),
}


def _ints(value: Any, what: str) -> tuple[int, ...] | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return (value,)
    if (
        isinstance(value, Sequence)
        and not isinstance(value, str)
        and value
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        return tuple(value)
    raise ArgumentError(
        f"reduce: {what}={value!r} is not an int or a non-empty list of ints; pass e.g. {what}=[0]."
    )


def as_reduction(spec: ReduceSpec) -> Reduction:
    """Turn ``reduce=`` into a :class:`Reduction`.

    Accepts ``None`` (full maps), a name (``"mean"``, ``"cls"``, ``"cls_mean"``, ``"last"``), a
    :class:`Reduction`, or a dict of its fields, e.g. ``{"rows": [0], "topk": 16}``.
    """
    if spec is None:
        return Reduction()
    if isinstance(spec, Reduction):
        red = spec
    elif isinstance(spec, str):
        try:
            red = _NAMED[spec]
        except KeyError:
            from ..errors import UnknownNameError, closest

            near = closest(spec, _NAMED)
            hint = f" Did you mean {', '.join(repr(n) for n in near)}?" if near else ""
            raise UnknownNameError(
                f"reduce: unknown reduction {spec!r}.{hint} Named reductions: {', '.join(_NAMED)}; or "
                "pass a dict such as {'rows': [0], 'topk': 16}."
            ) from None
    elif isinstance(spec, Mapping):
        known = {"heads", "rows", "mean_heads", "topk"}
        extra = set(spec) - known
        if extra:
            raise ArgumentError(
                f"reduce: unknown key(s) {sorted(extra)} in {dict(spec)!r}; the keys are {sorted(known)}."
            )
        red = Reduction(
            heads=_ints(spec.get("heads"), "heads"),
            rows=_ints(spec.get("rows"), "rows"),
            mean_heads=bool(spec.get("mean_heads", False)),
            topk=spec.get("topk"),
        )
    else:
        raise ArgumentError(
            f"reduce: cannot use {type(spec).__name__} {spec!r}. Pass None (full maps), 'mean', 'cls', "
            "a dict such as {'rows': [0], 'topk': 16}, or a netsight.attention.Reduction."
        )
    if red.topk is not None and (isinstance(red.topk, bool) or not isinstance(red.topk, int) or red.topk < 1):
        raise ArgumentError(f"reduce: topk={red.topk!r} must be a positive int (keys kept per query row).")
    return red
