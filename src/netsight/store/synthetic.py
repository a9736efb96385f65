"""Big synthetic runs, written straight into a store, for benchmarks and dashboard development.

``fill(store_dir, name, layers=500, steps=100_000)`` builds a finished run with per-layer metrics,
scalars, histograms, a module tree and a few alerts in a few seconds per 100,000 steps: it bypasses
the queue and the writer thread, but uses the writer's own level cascade (the same code), so the
readers see exactly what a real training run of that size would leave::

    from netsight.store import synthetic
    name = synthetic.fill("/tmp/big-store", "big", layers=500, steps=100_000)
    r = netsight.store.open("/tmp/big-store").run(name)
    r.layer_matrix("grad_norm", max_steps=2000)

The values are smooth per-layer trends (each layer its own scale, decaying with the step) with noise,
missing values (NaN) for a few layers, and a few spikes at known steps: ``SPIKES`` (step -> factor),
applied to layer 0 of every metric and to the ``loss`` scalar.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import ArgumentError
from . import _paths, _schema
from ._levels import LayerBucket, ScalarBucket
from ._writer import _Cascade, _insert_layer_levels, _insert_scalar_levels

__all__ = ["SPIKES", "fill", "layer_names"]

#: relative positions (fraction of ``steps``) of the spikes, and their factors
SPIKES: dict[float, float] = {0.25: 50.0, 0.5: -20.0, 0.9: 80.0}

_PARTS = ("conv1", "bn1", "relu", "conv2", "bn2")


def layer_names(layers: int) -> list[str]:
    """Module-like paths: ``blocks.0.conv1``, ``blocks.0.bn1``, ... (five per block)."""
    return [f"blocks.{i // len(_PARTS)}.{_PARTS[i % len(_PARTS)]}" for i in range(layers)]


def _progress(total: int, enabled: bool, desc: str) -> Any:
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, unit="step")


def fill(
    store_dir: str | os.PathLike[str],
    name: str = "synthetic",
    layers: int = 500,
    steps: int = 100_000,
    *,
    metrics: Sequence[str] = ("grad_norm",),
    scalars: Sequence[str] = ("loss", "lr"),
    hist_every: int = 1000,
    hist_bins: int = 32,
    values: npt.NDArray[np.floating[Any]] | None = None,
    seed: int = 0,
    chunk: int = 8192,
    progress: bool = False,
) -> str:
    """Write a finished run of ``layers`` x ``steps`` per-layer values for each of ``metrics``.

    Steps are ``0 .. steps - 1``. ``values`` (``[steps, layers]``) replaces the generated values of
    every metric (for tests). Histograms of kind ``"grad"`` (``hist_bins`` log-spaced edges) are
    written every ``hist_every`` steps (0: none). Returns the run's name (suffixed if ``name`` was
    taken). Memory stays at ``chunk * layers`` values at a time.
    """
    for arg, val, lo in (
        ("layers", layers, 1),
        ("steps", steps, 1),
        ("chunk", chunk, 1),
        ("hist_every", hist_every, 0),
        ("hist_bins", hist_bins, 2),
    ):
        if isinstance(val, bool) or not isinstance(val, int) or val < lo:
            raise ArgumentError(f"{arg}: expected an int >= {lo}, got {val!r}.")
    if values is not None and tuple(values.shape) != (steps, layers):
        raise ArgumentError(
            f"values: expected shape [steps, layers] = [{steps}, {layers}], got {values.shape}."
        )
    root = _paths.ensure_store(store_dir)
    final, path = _paths.reserve(root, name)
    conn = _schema.connect(str(path))
    rng = np.random.default_rng(seed)
    names = layer_names(layers)
    spike_steps = {int(f * (steps - 1)): k for f, k in SPIKES.items()}
    bar = _progress(steps * (len(metrics) + 1), progress, f"synthetic {final}")
    now = time.time()
    try:
        conn.execute("BEGIN IMMEDIATE")
        _schema.create(conn)
        config = {"synthetic": True, "layers": layers, "steps": steps, "seed": seed}
        conn.execute(
            "INSERT INTO run (id, name, status, config, created, updated, last_step) "
            "VALUES (1, ?, 'finished', ?, ?, ?, ?)",
            (final, json.dumps(config), now, now, steps - 1),
        )
        conn.executemany("INSERT INTO layers (idx, name) VALUES (?, ?)", list(enumerate(names)))
        nodes = [
            {
                "name": n,
                "type": n.rsplit(".", 1)[1],
                "parent": n.rsplit(".", 1)[0],
                "params": 0,
                "out_shape": None,
                "order": i,
            }
            for i, n in enumerate(names)
        ]
        conn.execute("INSERT INTO module_tree (id, nodes) VALUES (1, ?)", (json.dumps(nodes),))
        scale = np.exp(rng.uniform(-6, 1, layers)).astype(np.float32)  # per-layer magnitudes
        # a few layers (never layer 0, which carries the spikes) miss their values, one per chunk
        missing = 1 + rng.choice(max(1, layers - 1), size=max(1, layers // 100), replace=False)
        for mid, metric in enumerate(metrics):
            conn.execute("INSERT INTO metrics (id, name) VALUES (?, ?)", (mid, metric))
            casc: _Cascade[LayerBucket] = _Cascade(mid)
            for a in range(0, steps, chunk):
                b = min(steps, a + chunk)
                if values is not None:
                    block = np.asarray(values[a:b], dtype=np.float32)
                else:
                    t = np.arange(a, b, dtype=np.float32)[:, None]
                    noise = rng.standard_normal((b - a, layers), dtype=np.float32)
                    block = scale * (1.0 + 2.0 / (1.0 + t / 1000.0)) * (1.0 + 0.1 * noise)
                    if layers > 1:
                        block[:, missing[(a // chunk) % missing.shape[0]]] = np.nan
                    for s, k in spike_steps.items():
                        if a <= s < b:
                            block[s - a, 0] *= k
                rows = [(mid, a + i, block[i].tobytes()) for i in range(b - a)]
                conn.executemany("INSERT INTO layer_stats (metric_id, step, data) VALUES (?, ?, ?)", rows)
                levels: list[tuple[object, ...]] = []
                for i in range(b - a):
                    casc.push(a + i, block[i], LayerBucket.of, levels)
                _insert_layer_levels(conn, levels)
                if bar is not None:
                    bar.update(b - a)
            rest: list[tuple[object, ...]] = []
            casc.close(rest)
            _insert_layer_levels(conn, rest)
        t_all = np.arange(steps, dtype=np.float64)
        for kid, key in enumerate(scalars):
            conn.execute("INSERT INTO scalar_keys (id, key) VALUES (?, ?)", (kid, key))
            if key == "lr":
                series = 0.1 * 0.5 ** (t_all // max(1, steps // 4))
            else:
                series = 2.3 / (1.0 + t_all / 2000.0) + 0.05 * rng.standard_normal(steps)
                for s, k in spike_steps.items():
                    series[s] = abs(series[s]) * abs(k)
            conn.executemany(
                "INSERT INTO scalars (key_id, step, value) VALUES (?, ?, ?)",
                zip([kid] * steps, range(steps), series.tolist(), strict=True),
            )
            sc: _Cascade[ScalarBucket] = _Cascade(kid)
            srows: list[tuple[object, ...]] = []
            for s, v in enumerate(series.tolist()):
                sc.push(s, v, ScalarBucket.of, srows)
            sc.close(srows)
            _insert_scalar_levels(conn, srows)
            if bar is not None:
                bar.update(steps // max(1, len(scalars)))
        if hist_every:
            edges = np.concatenate([-np.logspace(2, -6, hist_bins // 2), np.logspace(-6, 2, hist_bins // 2)])
            conn.execute("INSERT INTO hist_edges (id, data) VALUES (1, ?)", (edges.tobytes(),))
            conn.executemany(
                "INSERT INTO hist_layers (kind, layer) VALUES ('grad', ?)", [(n,) for n in names]
            )
            for s in range(0, steps, hist_every):
                counts = rng.poisson(100.0, (layers, edges.shape[0] + 1)).astype(np.float64)
                conn.executemany(
                    "INSERT INTO histograms (kind, layer, step, edges_id, counts) "
                    "VALUES ('grad', ?, ?, 1, ?)",
                    [(n, s, counts[i].tobytes()) for i, n in enumerate(names)],
                )
        for s, k in spike_steps.items():
            conn.execute(
                "INSERT INTO alerts (step, layer, rule, value, message, severity) "
                "VALUES (?, ?, 'exploding', ?, ?, 'warning')",
                (s, names[0], float(k), f"{names[0]}: gradient norm jumped {k:g}x at step {s}"),
            )
        conn.execute(
            "INSERT INTO changes (time, last_step, summary) VALUES (?, ?, ?)",
            (
                now,
                steps - 1,
                json.dumps({"status": "finished", "metrics": list(metrics), "scalars": list(scalars)}),
            ),
        )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        conn.close()
        path.unlink(missing_ok=True)
        raise
    finally:
        if bar is not None:
            bar.close()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return final
