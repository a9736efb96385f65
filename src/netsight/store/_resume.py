"""Rebuild the writer's current buckets when a run is resumed (after close() or after a crash).

The current bucket of the finest level is re-aggregated from the raw rows; the current bucket of each
coarser level is the merge of the complete buckets, one level finer, that precede the current child.
Complete buckets are always on disk (they are written when the next one starts), so this is exact.
"""

from __future__ import annotations

import sqlite3

import numpy as np

from ._levels import LEVELS, LayerBucket, ScalarBucket

__all__ = ["restore_layer", "restore_scalar"]


def restore_scalar(conn: sqlite3.Connection, key_id: int) -> tuple[list[ScalarBucket | None], int | None]:
    row = conn.execute("SELECT MAX(step) FROM scalars WHERE key_id = ?", (key_id,)).fetchone()
    if row[0] is None:
        return [None] * len(LEVELS), None
    last = int(row[0])
    accs: list[ScalarBucket | None] = []
    b0 = last >> LEVELS[0]
    acc: ScalarBucket | None = None
    for step, value in conn.execute(
        "SELECT step, value FROM scalars WHERE key_id = ? AND step >= ? ORDER BY step",
        (key_id, b0 << LEVELS[0]),
    ):
        v = float("nan") if value is None else float(value)
        if acc is None:
            acc = ScalarBucket.of(b0, step, v)
        else:
            acc.add(step, v)
    accs.append(acc)
    for i in range(1, len(LEVELS)):
        cur, child, shift = last >> LEVELS[i], last >> LEVELS[i - 1], LEVELS[i] - LEVELS[i - 1]
        acc = None
        for r in conn.execute(
            "SELECT bucket, first_step, last_step, n, mn, mn_step, mx, mx_step, sm, cnt, last "
            "FROM scalar_levels WHERE key_id = ? AND level = ? AND bucket >= ? AND bucket < ? "
            "ORDER BY bucket",
            (key_id, LEVELS[i - 1], cur << shift, child),
        ):
            b = ScalarBucket(cur, *r[1:])
            if acc is None:
                acc = b
            else:
                acc.merge(b)
        accs.append(acc)
    return accs, last


def restore_layer(conn: sqlite3.Connection, metric_id: int) -> tuple[list[LayerBucket | None], int | None]:
    row = conn.execute("SELECT MAX(step) FROM layer_stats WHERE metric_id = ?", (metric_id,)).fetchone()
    if row[0] is None:
        return [None] * len(LEVELS), None
    last = int(row[0])
    accs: list[LayerBucket | None] = []
    b0 = last >> LEVELS[0]
    acc: LayerBucket | None = None
    for step, data in conn.execute(
        "SELECT step, data FROM layer_stats WHERE metric_id = ? AND step >= ? ORDER BY step",
        (metric_id, b0 << LEVELS[0]),
    ):
        v = np.frombuffer(data, np.float32).copy()
        if acc is None:
            acc = LayerBucket.of(b0, step, v)
        else:
            acc.add(step, v)
    accs.append(acc)
    for i in range(1, len(LEVELS)):
        cur, child, shift = last >> LEVELS[i], last >> LEVELS[i - 1], LEVELS[i] - LEVELS[i - 1]
        acc = None
        for r in conn.execute(
            "SELECT bucket, first_step, last_step, n, mn, mx, sm, cnt, last FROM layer_levels "
            "WHERE metric_id = ? AND level = ? AND bucket >= ? AND bucket < ? ORDER BY bucket",
            (metric_id, LEVELS[i - 1], cur << shift, child),
        ):
            b = LayerBucket.from_row(cur, *r[1:])
            if acc is None:
                acc = b
            else:
                acc.merge(b)
        accs.append(acc)
    return accs, last
