"""Rebuild the writer's pending buckets when a run is resumed (after close() or after a crash).

In the writer, level 0 (the finest) holds the bucket of the last step logged; each coarser level ``i``
holds the bucket ``T`` that its finalized children merge into. ``T`` is written only when a child of
another bucket is finalized, so it may be complete and still pending (not on disk) when the process
dies. Rebuilt here exactly: level 0 from the raw rows of the last step's bucket; level ``i`` as the
merge of the level ``i - 1`` rows written before the pending child of level ``i - 1``, that share the
parent ``T`` of the latest of them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from ._levels import LEVELS, LayerBucket, ScalarBucket

__all__ = ["restore_layer", "restore_scalar"]

_B = TypeVar("_B", ScalarBucket, LayerBucket)


def _restore(
    conn: sqlite3.Connection,
    key_id: int,
    *,
    raw_sql: str,
    level_sql: str,
    table: str,
    column: str,
    start: Callable[[int, int, Any], _B],
    from_row: Callable[[int, tuple[Any, ...]], _B],
) -> tuple[list[_B | None], int | None]:
    row = conn.execute(f"SELECT MAX(step) FROM {raw_sql} WHERE {column} = ?", (key_id,)).fetchone()  # noqa: S608
    accs: list[_B | None] = [None] * len(LEVELS)
    if row[0] is None:
        return accs, None
    last = int(row[0])
    live = last >> LEVELS[0]
    acc: _B | None = None
    for step, value in conn.execute(
        f"SELECT step, {'value' if raw_sql == 'scalars' else 'data'} FROM {raw_sql} "  # noqa: S608
        f"WHERE {column} = ? AND step >= ? ORDER BY step",
        (key_id, live << LEVELS[0]),
    ):
        v = _value(value)
        if acc is None:
            acc = start(live, step, v)
        else:
            acc.add(step, v)
    accs[0] = acc
    for i in range(1, len(LEVELS)):
        shift = LEVELS[i] - LEVELS[i - 1]
        p = conn.execute(
            f"SELECT MAX(bucket) FROM {table} WHERE {column} = ? AND level = ? AND bucket < ?",  # noqa: S608
            (key_id, LEVELS[i - 1], live),
        ).fetchone()[0]
        if p is None:
            break
        target = int(p) >> shift
        acc = None
        for r in conn.execute(
            f"SELECT {level_sql} FROM {table} WHERE {column} = ? AND level = ? AND bucket >= ? "  # noqa: S608
            "AND bucket < ? ORDER BY bucket",
            (key_id, LEVELS[i - 1], target << shift, min(live, (target + 1) << shift)),
        ):
            b = from_row(target, tuple(r[1:]))
            if acc is None:
                acc = b
            else:
                acc.merge(b)
        accs[i] = acc
        live = target
    return accs, last


def _value(value: object) -> Any:
    if isinstance(value, bytes):
        return np.frombuffer(value, np.float32).copy()
    return float("nan") if value is None else float(value)  # type: ignore[arg-type]


def restore_scalar(conn: sqlite3.Connection, key_id: int) -> tuple[list[ScalarBucket | None], int | None]:
    return _restore(
        conn,
        key_id,
        raw_sql="scalars",
        level_sql="bucket, first_step, last_step, n, mn, mn_step, mx, mx_step, sm, cnt, last",
        table="scalar_levels",
        column="key_id",
        start=ScalarBucket.of,
        from_row=lambda b, r: ScalarBucket(b, *r),
    )


def restore_layer(conn: sqlite3.Connection, metric_id: int) -> tuple[list[LayerBucket | None], int | None]:
    return _restore(
        conn,
        metric_id,
        raw_sql="layer_stats",
        level_sql="bucket, first_step, last_step, n, mn, mx, sm, cnt, last",
        table="layer_levels",
        column="metric_id",
        start=LayerBucket.of,
        from_row=lambda b, r: LayerBucket.from_row(b, *r),
    )
