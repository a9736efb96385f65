"""Store access and JSON encoding shared by the routers.

One store reader per application, one run reader per run name (the store's readers keep one SQLite
connection per thread, so FastAPI's thread pool can share them). Arrays leave as JSON lists with
non-finite values as ``null``, or, for layer x step matrices, as base64 little-endian float32 so that a
500 x 2000 matrix costs one ``tobytes`` instead of a million Python floats.
"""

from __future__ import annotations

import base64
import math
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import HTTPException

from ..capture import glob_match
from ..errors import RunNotFoundError, closest

__all__ = [
    "StoreAccess",
    "f32_base64",
    "filter_layers",
    "floats",
    "ints",
    "jsonable",
    "matrix_bytes",
    "order_rows",
    "value_range",
]

SORTS = ("order", "name", "max", "mean", "last", "min")


class StoreAccess:
    """Opens ``netsight.store.open(store_dir)`` once and caches one reader per run.

    The store's readers are thread-safe (one SQLite connection per thread inside each reader), so one
    cache serves every worker thread.
    """

    def __init__(self, store_dir: str | Path) -> None:
        self.store_dir = Path(store_dir)
        self._lock = threading.Lock()
        self._store: Any = None
        self._runs: dict[str, Any] = {}

    def store(self) -> Any:
        """The store reader (opened on first use)."""
        with self._lock:
            if self._store is None:
                from .. import store as store_module

                self._store = store_module.open(self.store_dir)
            return self._store

    def run(self, name: str) -> Any:
        """The reader of run ``name``; HTTP 404 naming the nearest runs when there is none.

        Only a name the store lists is opened: ``../other/run`` or an absolute path never reaches a
        file outside the store directory, and an over-long name is a 404, not an OS error.
        """
        with self._lock:
            reader = self._runs.get(name)
        if reader is not None:
            return reader
        store = self.store()
        names = store.names()
        if name not in names:
            near = closest(name, names)
            hint = f" Did you mean {', '.join(map(repr, near))}?" if near else ""
            raise HTTPException(
                status_code=404,
                detail=f"run: no run {name!r} in this store ({len(names)} runs).{hint} See /api/runs.",
            )
        try:
            reader = store.run(name)
        except RunNotFoundError as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from exc
        with self._lock:
            return self._runs.setdefault(name, reader)


def floats(values: Iterable[float] | np.ndarray) -> list[float | None]:
    """A JSON-safe list: every NaN or infinity becomes ``null``."""
    arr = np.asarray(values, dtype=np.float64).ravel()
    out: list[float | None] = list(arr.tolist())
    if not np.isfinite(arr).all():
        for i in np.flatnonzero(~np.isfinite(arr)).tolist():
            out[i] = None
    return out


def ints(values: Iterable[int] | np.ndarray) -> list[int]:
    """Steps and counts as plain Python ints."""
    out: list[int] = np.asarray(values, dtype=np.int64).ravel().tolist()
    return out


def f32_base64(matrix: np.ndarray) -> str:
    """Base64 of the matrix as C-ordered little-endian float32 (NaN and infinities kept)."""
    return base64.b64encode(np.ascontiguousarray(matrix, dtype="<f4").tobytes()).decode("ascii")


MATRIX_MAGIC = b"NSM1"


def matrix_bytes(meta: dict[str, Any], matrix: np.ndarray) -> bytes:
    """The binary form of a matrix answer: ``NSM1``, uint32 LE length of the JSON ``meta``, the JSON,
    zero padding to a multiple of 4 bytes, then the matrix as C-ordered little-endian float32.

    It saves the base64 step (a third larger, and a pass on each side) for the page's heatmaps.
    """
    import json

    head = json.dumps(meta, separators=(",", ":")).encode()
    pad = (-(8 + len(head))) % 4
    data = np.ascontiguousarray(matrix, dtype="<f4").tobytes()
    return b"".join((MATRIX_MAGIC, len(head).to_bytes(4, "little"), head, b" " * pad, data))


def value_range(values: np.ndarray) -> tuple[float | None, float | None, float | None]:
    """``(min, max, smallest positive)`` of the finite values (``None`` where there is none)."""
    finite = np.isfinite(values)
    if not finite.any():
        return None, None, None
    lo = float(values.min(where=finite, initial=np.inf))
    hi = float(values.max(where=finite, initial=-np.inf))
    positive = finite & (values > 0)
    pos = float(values.min(where=positive, initial=np.inf)) if positive.any() else None
    return lo, hi, pos


def jsonable(value: Any) -> Any:
    """``value`` with numpy scalars/arrays made plain and non-finite floats made ``null``."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return str(value)


def _patterns(filter_text: str | None) -> list[str]:
    if not filter_text:
        return []
    return [p for p in filter_text.replace(",", " ").split() if p]


def filter_layers(names: Sequence[str], filter_text: str | None) -> list[str]:
    """The names matching any of the space- or comma-separated globs in ``filter_text``.

    Globs follow :func:`netsight.capture.glob_match` (``*`` within a segment, ``**`` across); a pattern
    with no wildcard matches names that contain it.
    """
    patterns = _patterns(filter_text)
    if not patterns:
        return list(names)
    kept = []
    for name in names:
        for pattern in patterns:
            wild = any(c in pattern for c in "*?[")
            if (wild and glob_match(pattern, name)) or (not wild and pattern in name):
                kept.append(name)
                break
    return kept


def order_rows(names: Sequence[str], values: np.ndarray, sort: str) -> np.ndarray:
    """Row indices of ``values`` [L, S] in ``sort`` order (magnitudes descending, NaN rows last)."""
    count = len(names)
    if sort in ("order", "") or count == 0:
        return np.arange(count)
    if sort == "name":
        return np.array(sorted(range(count), key=lambda i: names[i]), dtype=np.int64)
    mags = np.abs(np.asarray(values, dtype=np.float64))
    finite = np.isfinite(mags)
    if sort == "max":
        key = np.fmax.reduce(np.where(finite, mags, np.nan), axis=1) if mags.shape[1] else np.zeros(count)
    elif sort == "min":
        key = np.fmin.reduce(np.where(finite, mags, np.nan), axis=1) if mags.shape[1] else np.zeros(count)
    elif sort == "mean":
        n = finite.sum(axis=1)
        total = np.where(finite, mags, 0.0).sum(axis=1)
        key = np.divide(total, n, out=np.full(count, np.nan), where=n > 0)
    else:  # "last": the latest finite value of each row
        has = finite.any(axis=1)
        last = mags.shape[1] - 1 - np.argmax(finite[:, ::-1], axis=1) if mags.shape[1] else np.zeros(count)
        key = np.where(has, mags[np.arange(count), last.astype(np.int64)] if mags.shape[1] else 0.0, np.nan)
    key = np.where(np.isfinite(key), key, -np.inf)
    return np.argsort(-key, kind="stable")
