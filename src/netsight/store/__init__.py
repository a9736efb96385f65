"""The run store: an embedded SQLite store of training runs, written in the background, read live.

Layout and decisions
--------------------
* **One directory per store, one SQLite file per run** (``<store_dir>/<run name>.sqlite``, plus a
  ``netsight-store.json`` marker). Separate files let several training processes write at once without
  contending for one write lock, make a run easy to copy or delete, and let a reader open only the run
  it shows. A new run claims its file atomically (``O_EXCL``), so two writers never pick the same name.
* **WAL journal, ``synchronous=NORMAL``.** Readers read while a writer commits; a process killed with
  SIGKILL loses at most the records not yet committed (at most ``commit_interval`` = 0.25 s of them plus
  what waits in the queue) and never corrupts the file.
* **Versioned schema** (:data:`SCHEMA_VERSION`): a ``schema_version`` row in ``meta``; a new file is
  laid out at version 1 and migrated step by step (``_schema.MIGRATIONS``), writers migrate an older
  file when they resume it, readers refuse it with a message pointing at :func:`migrate`, and a newer
  file is refused by both.
* **Writer** (:func:`open_run` -> :class:`Run`): the training thread validates metadata and queues;
  one background thread per run moves tensors to the host (stacked: one transfer per call), encodes
  PNGs, compresses tensors and commits in bursts, within about 0.25 s of each record (it gathers records
  for 0.2 s, then applies them in one transaction: one wake-up, not one per record). Its errors are
  logged on the ``netsight`` logger and raised again as :class:`~netsight.errors.StoreError` by the
  next call.
* **Status**: ``running`` until ``close()`` sets ``finished`` (``failed`` when the ``with`` block raised
  or the writer failed). A run never closed is flushed at interpreter exit and stays ``running``;
  :attr:`RunInfo.writing` (an ``flock`` the writing process holds) tells a live run from an interrupted
  one, also after SIGKILL. One writer per run: a second ``open_run(..., resume=True)`` is refused.
* **Per-layer statistics**: one row per (metric, step) holding a float32 blob of every layer's value
  (indexed by the layer's column in the ``layers`` table; NaN = missing). Beside it the writer keeps
  coarse **levels**: for buckets of 2^k steps (k = 4 .. 22) the min, max, sum, count and last value of
  each layer, built as a cascade (amortised O(1) per step, see :mod:`netsight.store._levels`). A
  ``layer_matrix`` over 100,000 steps reads ~1,600 bucket rows of one level instead of 100,000 raw rows.
  Scalars have the same levels, with the step of each bucket's min and max, so ``series`` keeps spikes
  at their true steps.
* **Histograms** (one row per kind, layer, step; edges shared by id), **images** (PNG blobs),
  **tensors** (zlib of the raw bytes, with dtype and shape), **alerts**, the **module tree** (JSON),
  **texts**, and a **change log** (one row per commit) that :meth:`RunReader.changes_since` reads for
  live updates.

Reading: :func:`open` -> :class:`Store` -> :meth:`Store.run` -> :class:`RunReader`; readers return numpy
arrays, bytes and Python objects and never import torch on a query. ``netsight.store.synthetic.fill``
writes a large store directly, for benchmarks. ``netsight.store.tensorboard`` has an opt-in TensorBoard
sink and a :class:`~netsight.store.tensorboard.Tee` that writes to several sinks.
"""

from __future__ import annotations

import os

from ..errors import RunNotFoundError, StoreError
from . import _paths, _schema
from ._reader import RunReader, Store, open  # noqa: A004 - the contract names the reader open()
from ._schema import SCHEMA_VERSION
from ._types import Alert, ImageInfo, RunInfo
from ._writer import Run, open_run

__all__ = [
    "SCHEMA_VERSION",
    "Alert",
    "ImageInfo",
    "Run",
    "RunInfo",
    "RunReader",
    "Store",
    "migrate",
    "open",
    "open_run",
]


def migrate(store_dir: str | os.PathLike[str], name: str | None = None) -> list[str]:
    """Upgrade run files of ``store_dir`` (all, or only ``name``) to :data:`SCHEMA_VERSION`.

    Returns the names of the runs that were migrated. Do it while no writer has them open.
    """
    root = _paths.check_store(store_dir)
    names = _paths.run_names(root) if name is None else [name]
    done: list[str] = []
    for n in names:
        path = _paths.run_path(root, n)
        if not path.is_file():
            raise RunNotFoundError(f"name: no run {n!r} in {str(root)!r}. List them with store.runs().")
        conn = _schema.connect(str(path))
        try:
            conn.execute("BEGIN IMMEDIATE")
            version = _schema.read_version(conn)
            if version is None:
                conn.execute("ROLLBACK")
                raise StoreError(f"name: run {n!r} has no schema yet (being created). Retry in a moment.")
            if version != SCHEMA_VERSION:
                _schema.migrate(conn, version, path=str(path))
                done.append(n)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        finally:
            conn.close()
    return done
