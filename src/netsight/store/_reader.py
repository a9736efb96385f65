"""The readers: :class:`Store` (a directory of runs) and :class:`RunReader` (one run's queries).

Readers never write and never import torch on a query: they return numpy arrays, bytes and Python
objects. Each thread gets its own SQLite connection; each query reads one consistent snapshot (WAL lets
it run while the writer commits). Long series are answered from the coarse levels
(:mod:`netsight.store._levels`): complete buckets from the level table, the rest of the range (the
head before the first whole bucket, and the tail after the last written one) from the raw rows.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import threading
import zlib
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import ArgumentError, RunNotFoundError, SelectorError, StoreError, UnknownNameError, closest
from . import _paths, _schema
from ._levels import choose_level, minmax_downsample
from ._types import Alert, ImageInfo, RunInfo

__all__ = ["RunReader", "Store", "open"]

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
_AGGS = ("max", "mean", "last", "min")
_CHUNK = 8  # coarse-level buckets are decoded and cached 256 at a time
_CACHE_BYTES = 128 * 2**20  # per run reader


class _BeingCreated(StoreError):
    """A run file whose writer has not committed its schema yet (private: callers see StoreError)."""


def open(store_dir: str | os.PathLike[str] = "netsight-runs") -> Store:  # noqa: A001 - the contract's name
    """Open a store directory for reading (``StoreError`` if it does not exist or is not a store)."""
    return Store(store_dir)


def _count(value: object, argument: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < minimum:
        raise ArgumentError(f"{argument}: expected an int >= {minimum}, got {value!r}. Pass e.g. 2000.")
    return int(value)


def _opt_step(value: object, argument: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ArgumentError(f"{argument}: expected an int step or None, got {value!r}.")
    return int(value)


class Store:
    """A directory of runs, read-only. ``store.runs()``, ``store.run(name)``."""

    def __init__(self, store_dir: str | os.PathLike[str]) -> None:
        self.path = _paths.check_store(store_dir)
        self._readers: dict[str, RunReader] = {}
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        """The names of the runs in the directory (including any still being created)."""
        return _paths.run_names(self.path)

    def runs(self) -> list[RunInfo]:
        """Every readable run, oldest first."""
        out: list[RunInfo] = []
        for name in self.names():
            try:
                out.append(self.run(name).info)
            except RunNotFoundError:  # noqa: PERF203 - one run at a time, the try is per run
                continue  # removed since it was listed
            except _BeingCreated:
                continue  # its writer has not committed the schema yet
        return sorted(out, key=lambda i: (i.created, i.name))

    def run(self, name: str) -> RunReader:
        """The reader of run ``name``; :class:`RunNotFoundError` names the nearest runs on a miss."""
        if not isinstance(name, str):
            raise ArgumentError(f"name: expected a run name (str), got {name!r}. See store.runs().")
        with self._lock:
            reader = self._readers.get(name)
            if reader is not None:
                return reader
            path = _paths.run_path(self.path, name)
            if not _paths.in_store(name) or not path.is_file():  # never a file outside the store
                names = self.names()
                near = closest(name, names)
                hint = f" Did you mean {', '.join(map(repr, near))}?" if near else ""
                raise RunNotFoundError(
                    f"name: no run {name!r} in {str(self.path)!r} ({len(names)} runs).{hint} "
                    "List them with store.runs()."
                )
            reader = RunReader(path, name)
            self._readers[name] = reader
            return reader

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and _paths.in_store(name) and _paths.run_path(self.path, name).is_file()

    def close(self) -> None:
        with self._lock:
            for r in self._readers.values():
                r.close()
            self._readers.clear()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"


class RunReader:
    """Queries over one run. Safe to use from several threads and while the run is being written."""

    def _repr_html_(self) -> str:
        """A card of the run for Jupyter: status, scalars, gradient flow, alerts (netsight.render)."""
        from ..render.notebook import run_html

        return run_html(self)

    def __init__(self, path: Path, name: str) -> None:
        self.path = path
        self.name = name
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        #: decoded coarse-level chunks: key -> (fingerprint, buckets, first steps, values)
        self._cache: OrderedDict[tuple[int, int, str, int], tuple[tuple[int, int, int], I64, I64, Any]] = (
            OrderedDict()
        )
        self._cache_bytes = 0
        self._conn()  # fail now, clearly, on a bad file

    # ---------------------------------------------------------------------------------- plumbing
    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        try:
            conn = sqlite3.connect(
                str(self.path), timeout=30.0, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA query_only=1")
            conn.execute("PRAGMA cache_size=-65536")
            version = _schema.read_version(conn)
        except sqlite3.DatabaseError as exc:
            if conn is not None:
                conn.close()
            raise StoreError(
                f"name: the file of run {self.name!r} ({str(self.path)!r}) is not a readable netsight run "
                f"({exc}). Remove it or pass another run."
            ) from exc
        if version is None:
            conn.close()
            raise _BeingCreated(
                f"name: run {self.name!r} is still being created by its writer (no schema yet). Retry in a "
                "moment."
            )
        if version != _schema.SCHEMA_VERSION:
            conn.close()
            if version > _schema.SCHEMA_VERSION:
                raise StoreError(
                    f"name: run {self.name!r} has schema version {version}, newer than this netsight's "
                    f"{_schema.SCHEMA_VERSION}. Upgrade netsight to read it."
                )
            raise StoreError(
                f"name: run {self.name!r} has schema version {version}; this netsight reads version "
                f"{_schema.SCHEMA_VERSION}. Migrate it once with "
                f"netsight.store.migrate({str(self.path.parent)!r}, {self.name!r})."
            )
        self._local.conn = conn
        with self._lock:
            self._conns.append(conn)
        return conn

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """One consistent snapshot for the queries of one call."""
        conn = self._conn()
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            for c in self._conns:
                c.close()
            self._conns.clear()
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"RunReader({self.name!r})"

    # -------------------------------------------------------------------------------- run level
    @property
    def info(self) -> RunInfo:
        with self._read() as conn:
            row = conn.execute("SELECT name, status, created, updated, last_step, config FROM run").fetchone()
        return RunInfo(
            row[0], row[1], row[2], row[3], row[4], json.loads(row[5]), _paths.is_writing(self.path)
        )

    def scalar_keys(self) -> list[str]:
        with self._read() as conn:
            return [r[0] for r in conn.execute("SELECT key FROM scalar_keys ORDER BY key")]

    def layer_metrics(self) -> list[str]:
        with self._read() as conn:
            return [r[0] for r in conn.execute("SELECT name FROM metrics ORDER BY id")]

    def layers(self) -> list[str]:
        """Layer names in module order (the module tree's execution order when logged, else first seen)."""
        with self._read() as conn:
            return self._layers(conn)

    def _layers(self, conn: sqlite3.Connection) -> list[str]:
        names = [r[0] for r in conn.execute("SELECT name FROM layers ORDER BY idx")]
        row = conn.execute("SELECT nodes FROM module_tree").fetchone()
        if row is None:
            return names
        rank: dict[str, tuple[int, int]] = {}
        for pos, node in enumerate(json.loads(row[0])):
            order = node.get("order", -1)
            rank[node["name"]] = (order if isinstance(order, int) and order >= 0 else 1 << 40, pos)
        first = {n: i for i, n in enumerate(names)}
        return sorted(names, key=lambda n: (*rank.get(n, (1 << 41, 0)), first[n]))

    def _key_id(  # noqa: PLR0917 - private helper, called positionally in one pattern
        self, conn: sqlite3.Connection, table: str, column: str, name: str, what: str, argument: str
    ) -> int:
        row = conn.execute(f"SELECT id FROM {table} WHERE {column} = ?", (name,)).fetchone()  # noqa: S608
        if row is None:
            known = [r[0] for r in conn.execute(f"SELECT {column} FROM {table}")]  # noqa: S608
            near = closest(name, known) if isinstance(name, str) else []
            hint = f" Did you mean {', '.join(map(repr, near))}?" if near else ""
            if _paths.is_writing(self.path):
                hint += (
                    " The run is being written now: a name appears once the writer commits it (within its "
                    "commit_interval, 0.25 s by default; run.flush() on the writing side commits at once)."
                )
            raise UnknownNameError(
                f"{argument}: run {self.name!r} has no {what} {name!r}.{hint} Known: {sorted(known)[:20]}"
            )
        return int(row[0])

    # ---------------------------------------------------------------------------------- scalars
    def series(
        self, key: str, max_points: int = 2000, start: int | None = None, end: int | None = None
    ) -> tuple[I64, F64]:
        """``(steps, values)`` of a scalar; more than ``max_points`` points are cut down to the min and
        the max of each bucket, at their own steps, so spikes survive. NaN marks a non-finite log."""
        max_points = _count(max_points, "max_points", 4)
        lo_arg, hi_arg = _opt_step(start, "start"), _opt_step(end, "end")
        with self._read() as conn:
            kid = self._key_id(conn, "scalar_keys", "key", key, "scalar", "key")
            lo, hi = _bounds(conn, "scalars", "key_id", kid, lo_arg, hi_arg)
            if lo is None or hi is None or lo > hi:
                return np.zeros(0, np.int64), np.zeros(0, np.float64)
            n = conn.execute(
                "SELECT COUNT(*) FROM scalars WHERE key_id = ? AND step BETWEEN ? AND ?", (kid, lo, hi)
            ).fetchone()[0]
            if n <= max_points:
                return _raw_scalars(conn, kid, lo, hi)
            k = choose_level(hi - lo + 1, (max_points - 4) // 2)
            if k is None:
                return minmax_downsample(*_raw_scalars(conn, kid, lo, hi), max_points)
            b_lo, b_hi = (lo + (1 << k) - 1) >> k, ((hi + 1) >> k) - 1
            rows = conn.execute(
                "SELECT bucket, mn, mn_step, mx, mx_step FROM scalar_levels WHERE key_id = ? AND level = ? "
                "AND bucket BETWEEN ? AND ? ORDER BY bucket",
                (kid, k, b_lo, b_hi),
            ).fetchall()
            head_end = min(b_lo << k, hi + 1)
            tail_start = max(((rows[-1][0] + 1) << k) if rows else head_end, head_end)
            head = minmax_downsample(*_raw_scalars(conn, kid, lo, head_end - 1), 2)
            tail = minmax_downsample(*_raw_scalars(conn, kid, tail_start, hi), 2)
        body_s: list[int] = []
        body_v: list[float] = []
        for _, mn, mn_step, mx, mx_step in rows:
            if mn is None:
                continue
            pts = sorted({(mn_step, mn), (mx_step, mx)})
            for s, v in pts:
                body_s.append(s)
                body_v.append(v)
        steps = np.concatenate([head[0], np.asarray(body_s, np.int64), tail[0]])
        values = np.concatenate([head[1], np.asarray(body_v, np.float64), tail[1]])
        return minmax_downsample(steps, values, max_points)

    # ----------------------------------------------------------------------------- layer stats
    def _layer_selection(
        self, conn: sqlite3.Connection, layers: str | Sequence[str] | None
    ) -> tuple[list[str], npt.NDArray[np.int64]]:
        ordered = self._layers(conn)
        index = dict(conn.execute("SELECT name, idx FROM layers").fetchall())
        if layers is None:
            names = ordered
        elif isinstance(layers, str):
            from ..capture import glob_match

            names = [n for n in ordered if n == layers or glob_match(layers, n)]
            if not names:
                near = closest(layers, ordered)
                hint = f" Did you mean {', '.join(map(repr, near))}?" if near else ""
                raise SelectorError(
                    f"layers: {layers!r} matches no layer of run {self.name!r}.{hint} See r.layers()."
                )
        elif isinstance(layers, Sequence):
            names = list(layers)
            for n in names:
                if n not in index:
                    near = closest(str(n), ordered)
                    hint = f" Did you mean {', '.join(map(repr, near))}?" if near else ""
                    raise SelectorError(
                        f"layers: run {self.name!r} has no layer {n!r}.{hint} See r.layers()."
                    )
        else:
            raise ArgumentError(f"layers: expected None, a glob or a list of names, got {layers!r}.")
        return names, np.array([index[n] for n in names], dtype=np.int64)

    def layer_matrix(  # noqa: PLR0917 - the contract's positional signature
        self,
        metric: str,
        layers: str | Sequence[str] | None = None,
        max_steps: int = 2000,
        start: int | None = None,
        end: int | None = None,
        agg: str = "max",
        *,
        dtype: type[np.floating[Any]] = np.float64,
    ) -> tuple[list[str], I64, npt.NDArray[Any]]:
        """``(names, steps, values[len(names), len(steps)])`` of one per-layer metric.

        Up to ``max_steps`` columns: with more logged steps in ``[start, end]``, each column aggregates a
        bucket of steps by ``agg`` (``"max"``, ``"mean"``, ``"last"`` or ``"min"``, NaN ignored) and is
        labelled with the first step it holds. NaN marks a layer without a value there. ``dtype`` of
        the values: float64 by default; ``np.float32`` (the stored precision) skips a conversion.
        """
        max_steps = _count(max_steps, "max_steps", 4)
        if agg not in _AGGS:
            raise ArgumentError(f"agg: expected one of {_AGGS}, got {agg!r}.")
        lo_arg, hi_arg = _opt_step(start, "start"), _opt_step(end, "end")
        with self._read() as conn:
            mid = self._key_id(conn, "metrics", "name", metric, "layer metric", "metric")
            names, idx = self._layer_selection(conn, layers)
            n_all = int(conn.execute("SELECT COUNT(*) FROM layers").fetchone()[0])
            lo, hi = _bounds(conn, "layer_stats", "metric_id", mid, lo_arg, hi_arg)
            if lo is None or hi is None or lo > hi:
                return names, np.zeros(0, np.int64), np.zeros((len(names), 0), dtype)
            n = conn.execute(
                "SELECT COUNT(*) FROM layer_stats WHERE metric_id = ? AND step BETWEEN ? AND ?", (mid, lo, hi)
            ).fetchone()[0]
            k = None if n <= max_steps else choose_level(hi - lo + 1, max_steps - 2)
            if k is None:
                steps, mat = _raw_layers(conn, mid, lo, hi, n_all)
                if mat.shape[0] > max_steps:  # span beyond the coarsest level: aggregate raw runs
                    steps, mat = _group(steps, mat, max_steps, agg)
            else:
                steps, mat = self._level_matrix(conn, mid, k, lo, hi, n_all, agg)
        if mat.shape[0] == 0:
            return names, steps, np.zeros((len(names), 0), dtype)
        if idx.shape[0] == mat.shape[1] and np.array_equal(idx, np.arange(mat.shape[1])):
            return names, steps, np.array(mat.T, dtype=dtype, order="C")  # one pass
        return names, steps, np.array(mat[:, idx].T, dtype=dtype, order="C")

    def _level_matrix(  # noqa: PLR0917 - private helper of layer_matrix
        self, conn: sqlite3.Connection, mid: int, k: int, lo: int, hi: int, n_all: int, agg: str
    ) -> tuple[I64, npt.NDArray[np.float32]]:
        b_lo, b_hi = (lo + (1 << k) - 1) >> k, ((hi + 1) >> k) - 1
        buckets, first, block = self._level_blocks(conn, mid, k, b_lo, b_hi, n_all, agg)
        head_end = min(b_lo << k, hi + 1)
        tail_start = max((int(buckets[-1]) + 1) << k if buckets.shape[0] else head_end, head_end)
        parts_s: list[I64] = []
        parts_v: list[npt.NDArray[np.float32]] = []
        hs, hm = _raw_layers(conn, mid, lo, head_end - 1, n_all)
        if hs.shape[0]:
            s1, v1 = _group(hs, hm, 1, agg)
            parts_s.append(s1)
            parts_v.append(v1)
        if buckets.shape[0]:
            parts_s.append(first)
            parts_v.append(block)
        ts, tm = _raw_layers(conn, mid, tail_start, hi, n_all)
        if ts.shape[0]:
            s1, v1 = _group(ts, tm, 1, agg)
            parts_s.append(s1)
            parts_v.append(v1)
        if not parts_s:
            return np.zeros(0, np.int64), np.zeros((0, n_all), np.float32)
        return np.concatenate(parts_s), np.concatenate(parts_v)

    def _level_blocks(  # noqa: PLR0917 - private helper of layer_matrix
        self, conn: sqlite3.Connection, mid: int, k: int, b_lo: int, b_hi: int, n_all: int, agg: str
    ) -> tuple[I64, I64, npt.NDArray[np.float32]]:
        """The written buckets ``b_lo .. b_hi`` of level ``k``: ``(buckets, first steps, values[n, L])``.

        Decoded in chunks of ``2**_CHUNK`` buckets that are cached (LRU, ``_CACHE_BYTES``) under a
        fingerprint (row count, highest rowid) read from the index: a chunk whose rows were written or
        replaced since is read again. A live view repeating its query then only reads the new chunks.
        """
        c_lo, c_hi = b_lo >> _CHUNK, b_hi >> _CHUNK
        prints = conn.execute(
            "SELECT bucket >> ?, COUNT(*), MAX(rowid) FROM layer_levels WHERE metric_id = ? AND level = ? "
            "AND bucket BETWEEN ? AND ? GROUP BY 1 ORDER BY 1",
            (_CHUNK, mid, k, c_lo << _CHUNK, ((c_hi + 1) << _CHUNK) - 1),
        ).fetchall()
        cols = {"max": "mx", "min": "mn", "last": "last", "mean": "sm, cnt"}[agg]
        parts: list[tuple[I64, I64, npt.NDArray[np.float32]]] = []
        for chunk, count, top in prints:
            key = (mid, k, agg, int(chunk))
            fingerprint = (int(count), int(top), n_all)
            with self._lock:
                hit = self._cache.get(key)
                if hit is not None and hit[0] == fingerprint:
                    self._cache.move_to_end(key)
            if hit is None or hit[0] != fingerprint:
                rows = conn.execute(
                    f"SELECT bucket, first_step, {cols} FROM layer_levels WHERE metric_id = ? "  # noqa: S608
                    "AND level = ? AND bucket BETWEEN ? AND ? ORDER BY bucket",
                    (mid, k, chunk << _CHUNK, ((chunk + 1) << _CHUNK) - 1),
                ).fetchall()
                b = np.fromiter((r[0] for r in rows), np.int64, len(rows))
                f = np.fromiter((r[1] for r in rows), np.int64, len(rows))
                if agg == "mean":
                    sm = _blobs([r[2] for r in rows], n_all, np.float32, 0.0)
                    cnt = _blobs([r[3] for r in rows], n_all, np.uint32, 0).astype(np.float32)
                    mat = np.full(sm.shape, np.nan, np.float32)
                    np.divide(sm, cnt, out=mat, where=cnt > 0)
                else:
                    mat = _blobs([r[2] for r in rows], n_all, np.float32, np.nan)
                hit = (fingerprint, b, f, mat)
                with self._lock:
                    self._cache[key] = hit
                    self._cache_bytes += mat.nbytes
                    while self._cache_bytes > _CACHE_BYTES and len(self._cache) > 1:
                        _, old = self._cache.popitem(last=False)
                        self._cache_bytes -= old[3].nbytes
            _, b, f, mat = hit
            parts.append((b, f, mat))
        if not parts:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, n_all), np.float32)
        b = np.concatenate([p[0] for p in parts])
        keep = (b >= b_lo) & (b <= b_hi)
        return (
            b[keep],
            np.concatenate([p[1] for p in parts])[keep],
            np.concatenate([p[2] for p in parts])[keep],
        )

    def layer_series(
        self,
        metric: str,
        layer: str,
        max_points: int = 2000,
        start: int | None = None,
        end: int | None = None,
    ) -> tuple[I64, F64]:
        """``(steps, values)`` of one layer's metric; beyond ``max_points``, each bucket gives its min (at
        the bucket's first step) and its max (at its last step), so spikes survive."""
        max_points = _count(max_points, "max_points", 4)
        lo_arg, hi_arg = _opt_step(start, "start"), _opt_step(end, "end")
        with self._read() as conn:
            mid = self._key_id(conn, "metrics", "name", metric, "layer metric", "metric")
            _, idx = self._layer_selection(conn, [layer])
            off = int(idx[0]) * 4 + 1
            lo, hi = _bounds(conn, "layer_stats", "metric_id", mid, lo_arg, hi_arg)
            if lo is None or hi is None or lo > hi:
                return np.zeros(0, np.int64), np.zeros(0, np.float64)
            n = conn.execute(
                "SELECT COUNT(*) FROM layer_stats WHERE metric_id = ? AND step BETWEEN ? AND ?", (mid, lo, hi)
            ).fetchone()[0]
            k = None if n <= max_points else choose_level(hi - lo + 1, (max_points - 4) // 2)
            if k is None:
                return minmax_downsample(*_raw_column(conn, mid, off, lo, hi), max_points)
            b_lo, b_hi = (lo + (1 << k) - 1) >> k, ((hi + 1) >> k) - 1
            rows = conn.execute(
                "SELECT bucket, first_step, last_step, substr(mn, ?, 4), substr(mx, ?, 4) FROM layer_levels "
                "WHERE metric_id = ? AND level = ? AND bucket BETWEEN ? AND ? ORDER BY bucket",
                (off, off, mid, k, b_lo, b_hi),
            ).fetchall()
            head_end = min(b_lo << k, hi + 1)
            tail_start = max(((rows[-1][0] + 1) << k) if rows else head_end, head_end)
            head = minmax_downsample(*_raw_column(conn, mid, off, lo, head_end - 1), 2)
            tail = minmax_downsample(*_raw_column(conn, mid, off, tail_start, hi), 2)
        s_list: list[int] = []
        v_list: list[float] = []
        for _, first, last, mn, mx in rows:
            vmn, vmx = _f32(mn), _f32(mx)
            if math.isnan(vmn):
                continue
            s_list += [first, last] if last != first else [first]
            v_list += [vmn, vmx] if last != first else [vmx]
        steps = np.concatenate([head[0], np.asarray(s_list, np.int64), tail[0]])
        values = np.concatenate([head[1], np.asarray(v_list, np.float64), tail[1]])
        return minmax_downsample(steps, values, max_points)

    def step_values(self, metric: str, step: int | None = None) -> tuple[list[str], F64]:
        """``(names, values)`` of one metric at ``step`` (the latest step at or before it; the latest
        step when ``None``), names in module order."""
        s = _opt_step(step, "step")
        with self._read() as conn:
            mid = self._key_id(conn, "metrics", "name", metric, "layer metric", "metric")
            names, idx = self._layer_selection(conn, None)
            if s is None:
                row = conn.execute(
                    "SELECT step, data FROM layer_stats WHERE metric_id = ? ORDER BY step DESC LIMIT 1",
                    (mid,),
                ).fetchone()
            else:
                row = conn.execute(
                    "SELECT step, data FROM layer_stats WHERE metric_id = ? AND step <= ? "
                    "ORDER BY step DESC LIMIT 1",
                    (mid, s),
                ).fetchone()
            n_all = len(names)
        if row is None:
            return names, np.full(n_all, np.nan)
        vec = _blobs([row[1]], n_all, np.float32, np.nan)[0]
        return names, vec[idx].astype(np.float64)

    # ------------------------------------------------------------------------------ histograms
    def histogram_layers(self, kind: str) -> list[str]:
        with self._read() as conn:
            have = {r[0] for r in conn.execute("SELECT layer FROM hist_layers WHERE kind = ?", (kind,))}
            order = self._layers(conn)
            return [n for n in order if n in have] + sorted(have.difference(order))

    def histogram_kinds(self) -> list[str]:
        with self._read() as conn:
            return [r[0] for r in conn.execute("SELECT DISTINCT kind FROM hist_layers ORDER BY kind")]

    def histograms(self, layer: str, kind: str, max_steps: int = 200) -> tuple[I64, F64, F64]:
        """``(steps, edges[E], counts[S, E+1])`` of one layer; at most ``max_steps`` steps, evenly
        spread, always with the last. Steps whose edges differ from the last step's are left out."""
        max_steps = _count(max_steps, "max_steps", 1)
        with self._read() as conn:
            if (
                conn.execute(
                    "SELECT 1 FROM hist_layers WHERE kind = ? AND layer = ?", (kind, layer)
                ).fetchone()
                is None
            ):
                pairs = conn.execute("SELECT kind, layer FROM hist_layers").fetchall()
                kinds = sorted({p[0] for p in pairs})
                if kind not in kinds:
                    near = closest(str(kind), kinds)
                    raise UnknownNameError(
                        f"kind: run {self.name!r} has no {kind!r} histograms. Known kinds: "
                        f"{kinds}." + (f" Did you mean {near[0]!r}?" if near else "")
                    )
                near = closest(str(layer), [p[1] for p in pairs if p[0] == kind])
                hint = f" Did you mean {', '.join(map(repr, near))}?" if near else ""
                raise UnknownNameError(
                    f"layer: run {self.name!r} has no {kind!r} histogram of {layer!r}.{hint}"
                )
            all_steps = np.array(
                [
                    r[0]
                    for r in conn.execute(
                        "SELECT step FROM histograms WHERE kind = ? AND layer = ? ORDER BY step",
                        (kind, layer),
                    )
                ],
                dtype=np.int64,
            )
            if all_steps.shape[0] > max_steps:
                pick = np.unique(np.linspace(0, all_steps.shape[0] - 1, max_steps).round().astype(np.int64))
                chosen = all_steps[pick]
            else:
                chosen = all_steps
            rows: list[tuple[int, int, bytes]] = []
            for i in range(0, chosen.shape[0], 500):
                part = [int(s) for s in chosen[i : i + 500]]
                rows += conn.execute(
                    f"SELECT step, edges_id, counts FROM histograms WHERE kind = ? AND layer = ? AND step IN "  # noqa: S608
                    f"({','.join('?' * len(part))}) ORDER BY step",
                    (kind, layer, *part),
                ).fetchall()
            eid = rows[-1][1]
            edges = np.frombuffer(
                conn.execute("SELECT data FROM hist_edges WHERE id = ?", (eid,)).fetchone()[0], np.float64
            ).copy()
        keep = [r for r in rows if r[1] == eid]
        steps = np.array([r[0] for r in keep], np.int64)
        counts = np.frombuffer(b"".join(r[2] for r in keep), np.float64).reshape(len(keep), -1).copy()
        return steps, edges, counts

    # ------------------------------------------------------------------ images, tensors, texts
    def images(
        self, kind: str | None = None, key: str | None = None, layer: str | None = None
    ) -> list[ImageInfo]:
        where, args = [], []
        for col, val in (("kind", kind), ("key", key), ("layer", layer)):
            if val is not None:
                where.append(f"{col} = ?")
                args.append(val)
        sql = "SELECT id, step, key, layer, kind, meta FROM images"
        if where:
            sql += " WHERE " + " AND ".join(where)
        with self._read() as conn:
            rows = conn.execute(sql + " ORDER BY step, id", args).fetchall()
        return [ImageInfo(r[0], r[1], r[2], r[3], r[4], json.loads(r[5])) for r in rows]

    def image(self, id: int) -> bytes:  # noqa: A002 - the contract's name
        """The PNG bytes of image ``id`` (from :meth:`images`)."""
        with self._read() as conn:
            row = conn.execute("SELECT png FROM images WHERE id = ?", (id,)).fetchone()
        if row is None:
            raise ArgumentError(f"id: run {self.name!r} has no image {id!r}. Take ids from r.images().")
        return bytes(row[0])

    def alerts(self) -> list[Alert]:
        with self._read() as conn:
            rows = conn.execute(
                "SELECT step, layer, rule, value, message, severity FROM alerts ORDER BY step, id"
            ).fetchall()
        return [Alert(r[0], r[1], r[2], float("nan") if r[3] is None else r[3], r[4], r[5]) for r in rows]

    def module_tree(self) -> list[dict[str, Any]]:
        with self._read() as conn:
            row = conn.execute("SELECT nodes FROM module_tree").fetchone()
        return [] if row is None else list(json.loads(row[0]))

    def texts(self) -> list[str]:
        with self._read() as conn:
            return [r[0] for r in conn.execute("SELECT key FROM texts ORDER BY key")]

    def text(self, key: str) -> str:
        with self._read() as conn:
            row = conn.execute("SELECT text FROM texts WHERE key = ?", (key,)).fetchone()
            if row is None:
                known = [r[0] for r in conn.execute("SELECT key FROM texts")]
                near = closest(str(key), known)
                hint = f" Did you mean {', '.join(map(repr, near))}?" if near else ""
                raise UnknownNameError(
                    f"key: run {self.name!r} has no text {key!r}.{hint} Known: {sorted(known)}"
                )
        return str(row[0])

    def tensor_keys(self) -> list[str]:
        with self._read() as conn:
            return [r[0] for r in conn.execute("SELECT DISTINCT key FROM tensors ORDER BY key")]

    def tensor(self, key: str, step: int | None = None) -> Any:
        """The tensor logged under ``key`` at ``step`` (the latest when ``None``): a ``torch.Tensor``,
        or a numpy array when torch is not installed."""
        s = _opt_step(step, "step")
        with self._read() as conn:
            if s is None:
                row = conn.execute(
                    "SELECT dtype, shape, data FROM tensors WHERE key = ? ORDER BY step DESC LIMIT 1", (key,)
                ).fetchone()
            else:
                row = conn.execute(
                    "SELECT dtype, shape, data FROM tensors WHERE key = ? AND step = ?", (key, s)
                ).fetchone()
            if row is None:
                known = [r[0] for r in conn.execute("SELECT DISTINCT key FROM tensors")]
                if key in known:
                    steps = [
                        r[0]
                        for r in conn.execute("SELECT step FROM tensors WHERE key = ? ORDER BY step", (key,))
                    ]
                    raise ArgumentError(
                        f"step: tensor {key!r} of run {self.name!r} has no step {s}; it has "
                        f"steps {steps[:20]}{'...' if len(steps) > 20 else ''}."
                    )
                near = closest(str(key), known)
                hint = f" Did you mean {', '.join(map(repr, near))}?" if near else ""
                raise UnknownNameError(f"key: run {self.name!r} has no tensor {key!r}.{hint}")
        dtype, shape, data = row[0], tuple(json.loads(row[1])), zlib.decompress(row[2])
        try:
            import torch
        except ImportError:  # pragma: no cover - torch is a dependency; numpy is the fallback
            return np.frombuffer(data, np.dtype(dtype)).reshape(shape).copy()
        t = (
            torch.frombuffer(bytearray(data), dtype=getattr(torch, dtype))
            if data
            else torch.zeros(0, dtype=getattr(torch, dtype))
        )
        return t.reshape(shape)

    # -------------------------------------------------------------------------------- live view
    def changes_since(self, cursor: int = 0) -> tuple[int, dict[str, Any]]:
        """What the writer committed after ``cursor`` (0: since the start): ``(new_cursor, summary)``.

        The summary holds ``changed`` (bool), ``last_step``, ``status``, the names of updated
        ``scalars``/``metrics``/``histograms`` (kinds)/``tensors``/``texts``, the numbers of new
        ``images`` and ``alerts``, and whether ``module_tree``/``config`` changed. Pass the returned
        cursor to the next call. ``reset`` is True when the summary lists everything in the run (cursor
        0, or a cursor older than the change log keeps): reload all views then.
        """
        c = _count(cursor, "cursor", 0)
        with self._read() as conn:
            oldest = conn.execute("SELECT MIN(seq) FROM changes").fetchone()[0]
            full = c == 0 or (oldest is not None and c < oldest - 1)
            rows = conn.execute(
                "SELECT seq, last_step, summary FROM changes WHERE seq > ? ORDER BY seq", (c,)
            ).fetchall()
            status, last_step = conn.execute("SELECT status, last_step FROM run").fetchone()
            out: dict[str, Any] = {
                "changed": bool(rows),
                "reset": full,
                "last_step": last_step,
                "status": status,
                "scalars": set(),
                "metrics": set(),
                "histograms": set(),
                "tensors": set(),
                "texts": set(),
                "images": 0,
                "alerts": 0,
                "module_tree": False,
                "config": False,
            }
            if full:  # everything there is (the log may have been pruned)
                out["scalars"].update(r[0] for r in conn.execute("SELECT key FROM scalar_keys"))
                out["metrics"].update(r[0] for r in conn.execute("SELECT name FROM metrics"))
                out["histograms"].update(r[0] for r in conn.execute("SELECT DISTINCT kind FROM hist_layers"))
                out["tensors"].update(r[0] for r in conn.execute("SELECT DISTINCT key FROM tensors"))
                out["texts"].update(r[0] for r in conn.execute("SELECT key FROM texts"))
                out["images"] = conn.execute("SELECT COUNT(*) FROM images").fetchone()[0]
                out["alerts"] = conn.execute("SELECT COUNT(*) FROM alerts").fetchone()[0]
                out["module_tree"] = conn.execute("SELECT COUNT(*) FROM module_tree").fetchone()[0] > 0
                out["config"] = True
                last_seq = conn.execute("SELECT MAX(seq) FROM changes").fetchone()[0]
                return (last_seq or 0), _sorted(out)
        for _, _, summary in rows:
            d = json.loads(summary)
            for name in ("scalars", "metrics", "histograms", "tensors", "texts"):
                out[name].update(d.get(name, ()))
            out["images"] += d.get("images", 0)
            out["alerts"] += d.get("alerts", 0)
            out["module_tree"] = out["module_tree"] or bool(d.get("module_tree"))
            out["config"] = out["config"] or bool(d.get("config"))
        return (rows[-1][0] if rows else c), _sorted(out)


def _sorted(out: dict[str, Any]) -> dict[str, Any]:
    for name in ("scalars", "metrics", "histograms", "tensors", "texts"):
        out[name] = sorted(out[name])
    return out


# ------------------------------------------------------------------------------------- helpers
def _bounds(  # noqa: PLR0917 - private helper
    conn: sqlite3.Connection, table: str, column: str, key: int, lo: int | None, hi: int | None
) -> tuple[int | None, int | None]:
    if lo is None:
        row = conn.execute(f"SELECT MIN(step) FROM {table} WHERE {column} = ?", (key,)).fetchone()  # noqa: S608
        lo = row[0]
    if hi is None:
        row = conn.execute(f"SELECT MAX(step) FROM {table} WHERE {column} = ?", (key,)).fetchone()  # noqa: S608
        hi = row[0]
    return lo, hi


def _raw_scalars(conn: sqlite3.Connection, kid: int, lo: int, hi: int) -> tuple[I64, F64]:
    if hi < lo:
        return np.zeros(0, np.int64), np.zeros(0, np.float64)
    rows = conn.execute(
        "SELECT step, value FROM scalars WHERE key_id = ? AND step BETWEEN ? AND ? ORDER BY step",
        (kid, lo, hi),
    ).fetchall()
    steps = np.fromiter((r[0] for r in rows), np.int64, len(rows))
    values = np.fromiter((np.nan if r[1] is None else r[1] for r in rows), np.float64, len(rows))
    return steps, values


def _raw_layers(
    conn: sqlite3.Connection, mid: int, lo: int, hi: int, n_all: int
) -> tuple[I64, npt.NDArray[np.float32]]:
    if hi < lo:
        return np.zeros(0, np.int64), np.zeros((0, n_all), np.float32)
    rows = conn.execute(
        "SELECT step, data FROM layer_stats WHERE metric_id = ? AND step BETWEEN ? AND ? ORDER BY step",
        (mid, lo, hi),
    ).fetchall()
    steps = np.fromiter((r[0] for r in rows), np.int64, len(rows))
    return steps, _blobs([r[1] for r in rows], n_all, np.float32, np.nan)


def _raw_column(conn: sqlite3.Connection, mid: int, off: int, lo: int, hi: int) -> tuple[I64, F64]:
    if hi < lo:
        return np.zeros(0, np.int64), np.zeros(0, np.float64)
    rows = conn.execute(
        "SELECT step, substr(data, ?, 4) FROM layer_stats WHERE metric_id = ? AND step BETWEEN ? "
        "AND ? ORDER BY step",
        (off, mid, lo, hi),
    ).fetchall()
    steps = np.fromiter((r[0] for r in rows), np.int64, len(rows))
    values = np.fromiter((_f32(r[1]) for r in rows), np.float64, len(rows))
    return steps, values


def _f32(b: bytes | None) -> float:
    if not b or len(b) != 4:
        return float("nan")
    return float(np.frombuffer(b, np.float32)[0])


def _blobs(blobs: list[bytes], n: int, dtype: type[np.generic], fill: float) -> npt.NDArray[Any]:
    """Stack per-row vectors of possibly different lengths (layers added later) into ``[rows, n]``."""
    size = np.dtype(dtype).itemsize
    if all(len(b) == n * size for b in blobs):
        return np.frombuffer(b"".join(blobs), dtype).reshape(len(blobs), n)  # read-only view
    out = np.full((len(blobs), n), fill, dtype)
    for i, b in enumerate(blobs):
        v = np.frombuffer(b, dtype)
        out[i, : v.shape[0]] = v
    return out


def _group(
    steps: I64, mat: npt.NDArray[np.float32], n_groups: int, agg: str
) -> tuple[I64, npt.NDArray[np.float32]]:
    """Aggregate consecutive raw rows into ``n_groups`` columns (labelled by their first step)."""
    bounds = np.unique(np.linspace(0, steps.shape[0], n_groups + 1).astype(np.int64))
    starts = bounds[:-1]
    if agg == "max":
        out = np.fmax.reduceat(mat, starts, axis=0)
    elif agg == "min":
        out = np.fmin.reduceat(mat, starts, axis=0)
    elif agg == "mean":
        ok = ~np.isnan(mat)
        sm = np.add.reduceat(np.where(ok, mat, 0), starts, axis=0)
        cnt = np.add.reduceat(ok.astype(np.float32), starts, axis=0)
        out = np.full(sm.shape, np.nan, np.float32)
        np.divide(sm, cnt, out=out, where=cnt > 0)
    else:  # last non-NaN value of each group
        out = np.full((starts.shape[0], mat.shape[1]), np.nan, np.float32)
        ends = np.append(starts[1:], steps.shape[0])
        for g, (a, b) in enumerate(zip(starts, ends, strict=True)):
            for r in range(a, b):
                np.copyto(out[g], mat[r], where=~np.isnan(mat[r]))
    return steps[starts], out.astype(np.float32)
