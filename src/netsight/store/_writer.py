"""The writer: ``open_run`` and :class:`Run`, which queue records for one background thread per run.

The training thread only validates arguments (shapes and types, metadata only), detaches tensors and
puts a tuple on a bounded queue. The writer thread moves tensors to the host (the 0-d tensors of one
``log`` call are stacked first, so they cost one transfer), encodes PNGs and compressed tensors, keeps
the coarse levels (:mod:`netsight.store._levels`) and commits. It works in bursts: after the first
record it lets the next ones gather for 0.8 x ``commit_interval`` (0.2 s by default; ``flush``,
``close`` or a half-full queue cut the wait short), then applies them all in one transaction, so a record
is committed within about ``commit_interval`` of being logged, and the writer does not wake (and take
the GIL from the training thread) once per record.
A writer error is logged on the ``netsight`` logger and raised again, as :class:`StoreError`, by the
next ``log*``/``flush``/``close`` call of the training thread.
"""

from __future__ import annotations

import atexit
import json
import logging
import math
import os
import queue
import sqlite3
import threading
import time
import weakref
import zlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import numpy as np
import numpy.typing as npt
import torch

from ..errors import ArgumentError, StoreError
from . import _paths, _schema
from ._levels import LEVELS, LayerBucket, ScalarBucket
from ._types import Alert, StepCounter

__all__ = ["Run", "open_run"]

logger = logging.getLogger("netsight")

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_STATUSES = ("running", "finished", "failed")
#: rows of the change log kept; ``changes_since`` answers an older cursor with a full summary
CHANGES_KEPT = 10_000


class _Bucket(Protocol):
    bucket: int

    def add(self, step: int, value: Any) -> None: ...

    def merge(self, other: Any) -> None: ...

    def row(self, key_id: int, level: int) -> tuple[object, ...]: ...


B = TypeVar("B", bound=_Bucket)


class _Cascade(Generic[B]):
    """The current bucket of every level for one series; see :mod:`netsight.store._levels`."""

    def __init__(self, key_id: int, accs: list[B | None] | None = None, last: int | None = None) -> None:
        self.key_id = key_id
        self.accs: list[B | None] = accs if accs is not None else [None] * len(LEVELS)
        self.last = last

    def push(
        self,
        step: int,
        value: Any,
        make: Callable[[int, int, Any], B],
        rows: list[tuple[object, ...]],
    ) -> None:
        """Fold ``value`` (a float or a per-layer vector) logged at ``step`` in; completed buckets go
        to ``rows``. ``make(bucket, step, value)`` starts a bucket."""
        if self.last is not None and step <= self.last:
            return  # a re-logged or earlier step: kept raw, not folded into the levels
        self.last = step
        b = step >> LEVELS[0]
        acc = self.accs[0]
        if acc is not None and acc.bucket != b:
            self.finalize(0, rows)
            acc = None
        if acc is None:
            self.accs[0] = make(b, step, value)
        else:
            acc.add(step, value)

    def finalize(self, i: int, rows: list[tuple[object, ...]]) -> None:
        acc = self.accs[i]
        if acc is None:
            return
        self.accs[i] = None
        rows.append(acc.row(self.key_id, LEVELS[i]))
        if i + 1 == len(LEVELS):
            return
        parent_bucket = acc.bucket >> (LEVELS[i + 1] - LEVELS[i])
        parent = self.accs[i + 1]
        if parent is not None and parent.bucket != parent_bucket:
            self.finalize(i + 1, rows)
            parent = None
        if parent is None:
            acc.bucket = parent_bucket  # the child's row is written; its arrays become the parent's
            self.accs[i + 1] = acc
        else:
            parent.merge(acc)

    def close(self, rows: list[tuple[object, ...]]) -> None:
        for i in range(len(LEVELS)):
            self.finalize(i, rows)


class _Summary:
    """What the current transaction touched; one row of the ``changes`` table per commit."""

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.scalars: set[str] = set()
        self.metrics: set[str] = set()
        self.histograms: set[str] = set()
        self.tensors: set[str] = set()
        self.texts: set[str] = set()
        self.images = 0
        self.alerts = 0
        self.module_tree = False
        self.config = False
        self.status: str | None = None

    def as_json(self) -> str:
        return json.dumps(
            {
                "scalars": sorted(self.scalars),
                "metrics": sorted(self.metrics),
                "histograms": sorted(self.histograms),
                "tensors": sorted(self.tensors),
                "texts": sorted(self.texts),
                "images": self.images,
                "alerts": self.alerts,
                "module_tree": self.module_tree,
                "config": self.config,
                "status": self.status,
            }
        )


_OPEN_RUNS: weakref.WeakSet[Run] = weakref.WeakSet()


def _flush_open_runs() -> None:
    """At interpreter exit, commit what runs never closed still hold in their queues.

    Their status stays ``"running"``: the process may be exiting on an uncaught exception, and a run is
    only ``"finished"`` when it was closed. Readers see ``RunInfo.writing == False`` for such a run.
    """
    for run in list(_OPEN_RUNS):
        try:
            run.flush(timeout=30.0)
        except StoreError:  # noqa: PERF203 - at exit, per run
            logger.exception("netsight: run %r could not be flushed at interpreter exit", run.name)


atexit.register(_flush_open_runs)


def open_run(
    store_dir: str | os.PathLike[str] = "netsight-runs",
    name: str | None = None,
    config: Mapping[str, Any] | None = None,
    resume: bool = False,
    *,
    queue_size: int = 1024,
    commit_interval: float = 0.25,
) -> Run:
    """Open a run for writing in ``store_dir`` (created if missing).

    ``name=None`` generates ``run-YYYYmmdd-HHMMSS``; an existing name with ``resume=False`` gets a
    suffix (``mnist-cnn-2``; read the final one from ``run.name``). ``resume=True`` appends to the
    run of that name (created when missing), continuing its step count. ``queue_size`` bounds the
    records waiting for the writer thread (a full queue makes ``log`` wait for it);
    ``commit_interval`` is the longest time, in seconds, a written record stays uncommitted.
    """
    if config is not None and not isinstance(config, Mapping):
        raise ArgumentError(f"config: expected a dict, got {type(config).__name__}. Pass e.g. {{'lr': 0.1}}.")
    if not isinstance(queue_size, int) or queue_size < 1:
        raise ArgumentError(f"queue_size: expected a positive int, got {queue_size!r}. Pass e.g. 1024.")
    if not isinstance(commit_interval, (int, float)) or not 0 < commit_interval <= 60:
        raise ArgumentError(
            f"commit_interval: expected seconds in (0, 60], got {commit_interval!r}. Pass e.g. 0.25."
        )
    root = _paths.ensure_store(store_dir)
    if resume and name is not None and _paths.run_path(root, _paths.validate_name(name)).exists():
        return Run(
            _paths.run_path(root, name),
            name,
            config,
            resume=True,
            queue_size=queue_size,
            commit_interval=float(commit_interval),
        )
    final, path = _paths.reserve(root, name)
    return Run(
        path, final, config, resume=False, queue_size=queue_size, commit_interval=float(commit_interval)
    )


def _config_json(config: Mapping[str, Any]) -> str:
    return json.dumps(dict(config), default=str, sort_keys=True)


def _is_scalar_tensor(value: object) -> bool:
    return isinstance(value, torch.Tensor) and value.numel() == 1


def _shape(value: object) -> str:
    shape = getattr(value, "shape", None)
    return f" of shape {tuple(shape)}" if shape is not None else ""


class Run:
    """A run being written. Use as a context manager, or call :meth:`close`.

    Every ``log*`` method returns at once: it checks its arguments and queues the record. Tensors stay
    on their device until the writer thread moves them.

    ``step=None``: one after the last step given to the *same* method (each of ``log``,
    ``log_layers``, ``log_histograms``, ``log_image``, ``log_tensor`` counts on its own), so the
    monitor's layer rows, written at explicit steps in delayed batches, never shift the numbering of a
    user's ``run.log(values)`` calls. Pass ``step=`` to line records of different kinds up.
    """

    def __init__(
        self,
        path: Path,
        name: str,
        config: Mapping[str, Any] | None,
        *,
        resume: bool,
        queue_size: int,
        commit_interval: float,
    ) -> None:
        self.name = name
        self.path = path
        self.store_dir = path.parent
        self._interval = commit_interval
        self._queue: queue.Queue[tuple[Any, ...]] = queue.Queue(maxsize=queue_size)
        self._error: BaseException | None = None
        self._closed = False
        self._lock = threading.Lock()
        self._lock_file = _paths.WriterLock(path)
        try:
            self._conn = _schema.connect(str(path))
        except BaseException:
            self._lock_file.release()
            raise
        try:
            self._start_state = self._open_file(config, resume)
        except BaseException:
            self._conn.close()
            self._lock_file.release()
            if not resume:
                path.unlink(missing_ok=True)
                _paths.lock_path(path).unlink(missing_ok=True)
            raise
        self._steps = StepCounter(self._start_state)
        self._name_cache: dict[str, tuple[str, ...]] = {}
        self._writer_cpu = 0.0
        self._wake = threading.Event()
        self._index_cache: tuple[tuple[str, ...], npt.NDArray[np.int64], bool] | None = None
        self._last_step = self._start_state if self._start_state >= 0 else None
        self._thread = threading.Thread(target=self._loop, name=f"netsight-store-{name}", daemon=True)
        self._thread.start()
        _OPEN_RUNS.add(self)

    # ---------------------------------------------------------------------------------------- setup
    def _open_file(self, config: Mapping[str, Any] | None, resume: bool) -> int:
        """Create or reopen the file; return the last step logged (-1 for none)."""
        conn = self._conn
        now = time.time()
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = _schema.read_version(conn)
            if version is None:
                _schema.create(conn)
                conn.execute(
                    "INSERT INTO run (id, name, status, config, created, updated, last_step) "
                    "VALUES (1, ?, 'running', ?, ?, ?, NULL)",
                    (self.name, _config_json(config or {}), now, now),
                )
                conn.execute(
                    "INSERT INTO changes (time, last_step, summary) VALUES (?, NULL, ?)",
                    (now, json.dumps({"status": "running", "config": True})),
                )
                last = -1
            else:
                _schema.migrate(conn, version, path=str(self.path))
                row = conn.execute("SELECT config, last_step FROM run WHERE id = 1").fetchone()
                merged = {**json.loads(row[0]), **dict(config or {})}
                conn.execute(
                    "UPDATE run SET status = 'running', config = ?, updated = ? WHERE id = 1",
                    (_config_json(merged), now),
                )
                conn.execute(
                    "INSERT INTO changes (time, last_step, summary) VALUES (?, ?, ?)",
                    (now, row[1], json.dumps({"status": "running", "config": True})),
                )
                last = -1 if row[1] is None else int(row[1])
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self._load_ids(resume=version is not None)
        return last

    def _load_ids(self, *, resume: bool) -> None:
        conn = self._conn
        self._scalar_ids = dict(conn.execute("SELECT key, id FROM scalar_keys").fetchall())
        self._metric_ids = dict(conn.execute("SELECT name, id FROM metrics").fetchall())
        self._layer_idx = dict(conn.execute("SELECT name, idx FROM layers").fetchall())
        self._edge_ids = {bytes(d): i for i, d in conn.execute("SELECT id, data FROM hist_edges")}
        self._scalar_levels: dict[int, _Cascade[ScalarBucket]] = {}
        self._layer_levels: dict[int, _Cascade[LayerBucket]] = {}
        if resume:
            from ._resume import restore_layer, restore_scalar

            for kid in self._scalar_ids.values():
                accs, last = restore_scalar(conn, kid)
                self._scalar_levels[kid] = _Cascade(kid, accs, last)
            for mid in self._metric_ids.values():
                laccs, llast = restore_layer(conn, mid)
                self._layer_levels[mid] = _Cascade(mid, laccs, llast)

    # ------------------------------------------------------------------------- training-thread API
    @property
    def writer_cpu_seconds(self) -> float:
        """CPU time the background writer thread has used so far (updated at each commit)."""
        return self._writer_cpu

    @property
    def step(self) -> int:
        """The last step logged through this object (or found in the resumed run); -1 before any."""
        return self._steps.last

    def _check(self) -> None:
        if self._error is not None:
            raise StoreError(
                f"run {self.name!r}: the writer thread failed ({type(self._error).__name__}: {self._error}); "
                "nothing after that was written. See the 'netsight' log for the traceback."
            ) from self._error
        if self._closed:
            raise StoreError(
                f"run {self.name!r} is closed. Open it again with ns.open_run(..., resume=True)."
            )

    def _put(self, item: tuple[Any, ...]) -> None:
        self._check()
        while True:
            try:
                self._queue.put(item, timeout=0.5)
            except queue.Full:
                self._wake.set()
                self._check()
                if not self._thread.is_alive():
                    raise StoreError(f"run {self.name!r}: the writer thread has stopped.") from None
                continue
            if self._queue.qsize() * 2 > self._queue.maxsize:
                self._wake.set()  # half full: let the writer drain now rather than at the end of its wait
            return

    def _take_step(self, step: object, kind: str, argument: str = "step") -> int:
        """``step``, checked, numbered by :class:`StepCounter` (``None``: per writer method)."""
        if step is None:
            return self._steps.take(None, kind)
        if isinstance(step, (int, np.integer)) and not isinstance(step, bool):
            s = int(step)
            if s < 0:
                raise ArgumentError(f"{argument}: expected a step >= 0, got {s}. Pass the training step.")
        else:
            raise ArgumentError(f"{argument}: expected an int step or None, got {step!r}. Pass e.g. step=10.")
        return self._steps.take(s, kind)

    def _names(self, names: object, argument: str) -> tuple[str, ...]:
        """Validated names; the same list as last time (the monitor's case) is checked in one compare."""
        cache = self._name_cache.get(argument)
        if cache is not None and isinstance(names, (list, tuple)) and len(names) == len(cache):
            t = tuple(names)
            if t == cache:
                return cache
        checked = _names(names, argument)
        self._name_cache[argument] = checked
        return checked

    def log(self, values: Mapping[str, object], step: int | None = None) -> None:
        """Log scalars. Values are numbers or one-element tensors (no ``.item()`` needed: tensors on an
        accelerator are copied there, then stacked and moved to the host together in the writer
        thread; the value logged is the one at this call). ``step=None``: one after the last step
        given to ``log``."""
        if not isinstance(values, Mapping):
            raise ArgumentError(
                f"values: expected a dict of name -> number, got {type(values).__name__}. "
                "Pass e.g. run.log({'loss': loss}, step=step)."
            )
        keys: list[str] = []
        tensors: list[torch.Tensor] = []
        numbers: list[tuple[str, float]] = []
        for key, value in values.items():
            if not isinstance(key, str) or not key:
                raise ArgumentError(f"values: scalar names must be non-empty strings, got {key!r}.")
            if isinstance(value, torch.Tensor):
                if value.numel() != 1:
                    raise ArgumentError(
                        f"values[{key!r}]: expected a one-element tensor, got shape {tuple(value.shape)}. "
                        "Reduce it first (e.g. .mean()), or use run.log_tensor for whole tensors."
                    )
                if value.device.type == "cpu":  # read now (no transfer to wait for): a later in-place
                    numbers.append((key, float(value.detach())))  # change (a running sum) must not alter it
                else:  # a copy on the device, queued without a sync: the value as of this call
                    keys.append(key)
                    tensors.append(value.detach().clone())
            elif isinstance(value, (int, float, np.integer, np.floating, np.bool_)):
                numbers.append((key, float(value)))
            elif isinstance(value, np.ndarray) and value.size == 1 and value.dtype.kind in "biuf":
                numbers.append((key, float(value.reshape(-1)[0])))  # a 0-d or one-element array
            else:
                raise ArgumentError(
                    f"values[{key!r}]: expected a number or a one-element tensor or array, got "
                    f"{type(value).__name__}{_shape(value)}. Pass e.g. {{'loss': loss}} or {{'acc': 0.9}}."
                )
        s = self._take_step(step, "scalars")
        self._put(("scalars", s, keys, tensors, numbers))

    def log_layers(
        self,
        step: int | None,
        layers: Sequence[str],
        metrics: Sequence[str],
        values: torch.Tensor | npt.NDArray[Any],
    ) -> None:
        """Log a per-layer statistics matrix ``values[len(layers), len(metrics)]`` (NaN = missing)."""
        layers_t = self._names(layers, "layers")
        metrics_t = self._names(metrics, "metrics")
        if isinstance(values, torch.Tensor):
            values = values.detach()
        elif not isinstance(values, np.ndarray):
            raise ArgumentError(
                f"values: expected a Tensor or ndarray [layers, metrics], got {type(values).__name__}."
            )
        if tuple(values.shape) != (len(layers_t), len(metrics_t)):
            raise ArgumentError(
                f"values: expected shape [len(layers), len(metrics)] = [{len(layers_t)}, {len(metrics_t)}], "
                f"got {tuple(values.shape)}. Put one row per layer and one column per metric."
            )
        s = self._take_step(step, "layers")
        self._put(("layers", s, layers_t, metrics_t, values))

    def log_histograms(
        self,
        step: int | None,
        kind: str,
        layers: Sequence[str],
        edges: torch.Tensor | npt.NDArray[Any],
        counts: torch.Tensor | npt.NDArray[Any],
    ) -> None:
        """Log histograms of ``layers``: ``counts[L, E+1]`` over the bins cut by ``edges[E]``
        (``counts[:, 0]`` below ``edges[0]``, ``counts[:, E]`` above ``edges[-1]``)."""
        if not isinstance(kind, str) or not kind:
            raise ArgumentError(f"kind: expected a non-empty string such as 'grad', got {kind!r}.")
        layers_t = _names(layers, "layers")
        for arg, t in (("edges", edges), ("counts", counts)):
            if not isinstance(t, (torch.Tensor, np.ndarray)):
                raise ArgumentError(f"{arg}: expected a Tensor or ndarray, got {type(t).__name__}.")
        if edges.ndim != 1 or edges.shape[0] < 1:
            raise ArgumentError(f"edges: expected a 1-d tensor of bin edges, got shape {tuple(edges.shape)}.")
        want = (len(layers_t), edges.shape[0] + 1)
        if tuple(counts.shape) != want:
            raise ArgumentError(
                f"counts: expected shape [len(layers), len(edges) + 1] = {list(want)}, got "
                f"{tuple(counts.shape)}. Include the under- and overflow bins."
            )
        e = edges.detach() if isinstance(edges, torch.Tensor) else edges
        c = counts.detach() if isinstance(counts, torch.Tensor) else counts
        self._check_edges(e)
        s = self._take_step(step, "hist")
        self._put(("hist", s, kind, layers_t, e, c))

    def _check_edges(self, e: torch.Tensor | npt.NDArray[Any]) -> None:
        """Finite, strictly increasing edges (the dashboard and reports label bins with them). Host
        arrays only (a device tensor would cost a sync; the monitor's edges live on the host), and
        once per edges object while it is unchanged (the monitor passes the same one every time)."""
        if isinstance(e, torch.Tensor) and e.device.type != "cpu":
            return
        seen = self._edges_checked
        if isinstance(e, torch.Tensor) and seen is not None and seen[0]() is e and seen[1] == e._version:
            return
        arr = e.double().numpy() if isinstance(e, torch.Tensor) else np.asarray(e, dtype=np.float64)
        if not np.isfinite(arr).all() or (np.diff(arr) <= 0).any():
            shown = np.array2string(arr, threshold=8, precision=4)
            raise ArgumentError(
                f"edges: expected finite, strictly increasing bin edges, got {shown}. Use e.g. "
                "netsight.capture.reducers.log_edges(), or put NaN and Inf in the under- and overflow bins."
            )
        if isinstance(e, torch.Tensor):
            self._edges_checked = (weakref.ref(e), e._version)

    _edges_checked: tuple[weakref.ref[torch.Tensor], int] | None = None

    def log_image(  # noqa: PLR0917 - the contract's positional signature
        self,
        step: int | None,
        key: str,
        image: torch.Tensor | npt.NDArray[Any] | bytes,
        layer: str | None = None,
        kind: str = "image",
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        """Log a picture: a uint8 tensor ``[H, W]``/``[H, W, 3]``/``[H, W, 4]`` or PNG bytes."""
        if not isinstance(key, str) or not key:
            raise ArgumentError(f"key: expected a non-empty string, got {key!r}.")
        if not isinstance(kind, str) or not kind:
            raise ArgumentError(f"kind: expected a non-empty string such as 'activation_map', got {kind!r}.")
        if layer is not None and not isinstance(layer, str):
            raise ArgumentError(f"layer: expected a module path or None, got {layer!r}.")
        if isinstance(image, (bytes, bytearray, memoryview)):
            image = bytes(image)
            if not image.startswith(_PNG_MAGIC):
                raise ArgumentError(
                    "image: bytes given are not a PNG (no PNG signature). Pass PNG bytes "
                    "or a uint8 tensor [H, W, 3]."
                )
        elif isinstance(image, (torch.Tensor, np.ndarray)):
            ok_dtype = (
                image.dtype == torch.uint8 if isinstance(image, torch.Tensor) else image.dtype == np.uint8
            )
            if not ok_dtype or not (image.ndim == 2 or (image.ndim == 3 and image.shape[-1] in (1, 3, 4))):
                raise ArgumentError(
                    f"image: expected uint8 [H, W], [H, W, 3] or [H, W, 4], got {image.dtype} "
                    f"{tuple(image.shape)}. Convert with netsight.render.to_uint8 (channels last)."
                )
            if isinstance(image, torch.Tensor):
                image = image.detach()
        else:
            raise ArgumentError(f"image: expected a uint8 tensor or PNG bytes, got {type(image).__name__}.")
        meta_json = _config_json(meta or {})
        s = self._take_step(step, "image")
        self._put(("image", s, key, image, layer, kind, meta_json))

    def log_explanation(
        self,
        step: int | None,
        method: str,
        image_index: int,
        image: torch.Tensor | npt.NDArray[Any] | bytes,
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        """``log_image(step, f"{method}/{image_index}", image, kind="explanation", meta=meta)``."""
        self.log_image(step, f"{method}/{image_index}", image, kind="explanation", meta=meta)

    def log_tensor(self, step: int | None, key: str, tensor: torch.Tensor | npt.NDArray[Any]) -> None:
        """Keep a small tensor (zlib-compressed bytes with its dtype and shape)."""
        if not isinstance(key, str) or not key:
            raise ArgumentError(f"key: expected a non-empty string, got {key!r}.")
        if isinstance(tensor, np.ndarray):
            tensor = torch.from_numpy(np.ascontiguousarray(tensor).copy())
        if not isinstance(tensor, torch.Tensor):
            raise ArgumentError(f"tensor: expected a Tensor or ndarray, got {type(tensor).__name__}.")
        s = self._take_step(step, "tensor")
        self._put(("tensor", s, key, tensor.detach()))

    def log_alert(self, alert: Alert) -> None:
        """Keep a diagnosis."""
        if not isinstance(alert, Alert):
            raise ArgumentError(f"alert: expected a netsight.store.Alert, got {type(alert).__name__}.")
        self._put(("alert", alert))

    def log_module_tree(self, nodes: Sequence[Mapping[str, Any]]) -> None:
        """Keep the model's module tree: dicts with name, type, parent, params, out_shape, order."""
        if isinstance(nodes, (str, bytes)) or not isinstance(nodes, Sequence):
            raise ArgumentError(f"nodes: expected a list of dicts, got {type(nodes).__name__}.")
        for i, node in enumerate(nodes):
            if not isinstance(node, Mapping) or not isinstance(node.get("name"), str):
                raise ArgumentError(
                    f"nodes[{i}]: expected a dict with a 'name' (module path), got {node!r}. "
                    "Each node: {'name', 'type', 'parent', 'params', 'out_shape', 'order'}."
                )
        self._put(("tree", json.dumps([dict(n) for n in nodes], default=str)))

    def log_text(self, key: str, text: str, step: int | None = None) -> None:
        """Keep a text (for example a self-contained HTML page) under ``key``; a later one replaces it."""
        if not isinstance(key, str) or not key:
            raise ArgumentError(f"key: expected a non-empty string, got {key!r}.")
        if not isinstance(text, str):
            raise ArgumentError(f"text: expected a str, got {type(text).__name__}.")
        self._put(("text", key, text, step))

    def set_config(self, config: Mapping[str, Any]) -> None:
        """Merge ``config`` into the run's configuration (keys given replace earlier values)."""
        if not isinstance(config, Mapping):
            raise ArgumentError(f"config: expected a dict, got {type(config).__name__}.")
        self._put(("config", _config_json(config)))

    def flush(self, timeout: float | None = 60.0) -> None:
        """Wait until everything logged so far is committed (at most ``timeout`` seconds; None: no limit)."""
        done = threading.Event()
        self._put(("flush", done))
        self._wake.set()
        deadline = None if timeout is None else time.monotonic() + timeout
        while not done.wait(0.05):
            self._check()
            if not self._thread.is_alive():
                break
            if deadline is not None and time.monotonic() > deadline:
                raise StoreError(
                    f"timeout: run {self.name!r} did not commit within {timeout} s (the writer is behind by "
                    f"{self._queue.qsize()} records). Pass a larger timeout, or log less often."
                )
        self._check()

    def close(self, status: str | None = None) -> None:
        """Drain the queue, commit, and set the status (``"finished"`` by default). Idempotent."""
        if status is not None and status not in _STATUSES:
            raise ArgumentError(f"status: expected one of {_STATUSES}, got {status!r}.")
        with self._lock:
            if self._closed:
                if self._error is not None:
                    self._check()
                return
            if self._error is None:
                self._queue.put(("close", status or "finished"))
            else:
                self._queue.put(("close", "failed"))
            self._wake.set()
            self._thread.join()
            self._lock_file.release()
            self._closed = True
            _OPEN_RUNS.discard(self)
        if self._error is not None:
            raise StoreError(
                f"run {self.name!r}: the writer thread failed ({type(self._error).__name__}: {self._error}); "
                "the run is marked 'failed'. See the 'netsight' log for the traceback."
            ) from self._error

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        self.close("failed" if exc_type is not None else "finished")

    def __repr__(self) -> str:
        return f"Run(name={self.name!r}, path={str(self.path)!r}, step={self._steps.last})"

    # ------------------------------------------------------------------------------ writer thread
    def _loop(self) -> None:
        conn = self._conn
        summary = _Summary()
        in_tx = False
        status = "finished"
        try:
            while True:
                # Work in bursts: take the first record, let the next ones gather for most of a commit
                # interval (without waking per record, which would hand the GIL back and forth with the
                # training thread every step), then apply them all in one transaction. flush() and
                # close() cut the wait short.
                item = self._queue.get()
                batch = [item]
                if item[0] not in ("flush", "close"):
                    self._wake.wait(self._interval * 0.8)
                    self._wake.clear()
                while True:
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:  # noqa: PERF203 - the drain ends at the first miss
                        break
                stop = None
                flushes = []
                for it in batch:
                    if it[0] == "flush":
                        flushes.append(it[1])
                    elif it[0] == "close":
                        stop = it[1]
                    else:
                        if not in_tx:
                            conn.execute("BEGIN IMMEDIATE")
                            in_tx = True
                        self._apply(it, summary)
                if in_tx:
                    self._commit(summary)
                    in_tx = False
                for done in flushes:
                    done.set()
                if stop is not None:
                    status = stop
                    break
            self._finish(status, summary)
        except BaseException as exc:
            self._error = exc
            logger.error("netsight: the writer of run %r failed", self.name, exc_info=exc)
            try:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                conn.execute("UPDATE run SET status = 'failed', updated = ? WHERE id = 1", (time.time(),))
            except sqlite3.Error:
                logger.exception("netsight: could not mark run %r as failed", self.name)
            self._drain_after_error()
        finally:
            self._writer_cpu = time.thread_time()
            conn.close()

    def _drain_after_error(self) -> None:
        """Keep emptying the queue (so the training thread never blocks) until close()."""
        while True:
            item = self._queue.get()
            if item[0] == "flush":
                item[1].set()
            elif item[0] == "close":
                return

    def _finish(self, status: str, summary: _Summary) -> None:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        rows: list[tuple[object, ...]] = []
        for sc in self._scalar_levels.values():
            sc.close(rows)
        _insert_scalar_levels(conn, rows)
        rows = []
        for lc in self._layer_levels.values():
            lc.close(rows)
        _insert_layer_levels(conn, rows)
        summary.status = status
        conn.execute("UPDATE run SET status = ? WHERE id = 1", (status,))
        self._commit(summary)
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def _commit(self, summary: _Summary) -> None:
        now = time.time()
        conn = self._conn
        conn.execute("UPDATE run SET updated = ?, last_step = ? WHERE id = 1", (now, self._last_step))
        cur = conn.execute(
            "INSERT INTO changes (time, last_step, summary) VALUES (?, ?, ?)",
            (now, self._last_step, summary.as_json()),
        )
        seq = cur.lastrowid or 0
        if seq % 1000 == 0:  # keep the change log short; older cursors get a full summary
            conn.execute("DELETE FROM changes WHERE seq <= ?", (seq - CHANGES_KEPT,))
        conn.execute("COMMIT")
        summary.clear()
        self._writer_cpu = time.thread_time()

    def _seen(self, step: int) -> None:
        if self._last_step is None or step > self._last_step:
            self._last_step = step

    def _id(self, table: dict[str, int], sql_table: str, column: str, name: str) -> int:
        i = table.get(name)
        if i is None:
            i = len(table)
            self._conn.execute(
                f"INSERT INTO {sql_table} ({'idx' if sql_table == 'layers' else 'id'}, {column}) "  # noqa: S608
                "VALUES (?, ?)",
                (i, name),
            )
            table[name] = i
        return i

    def _apply(self, item: tuple[Any, ...], summary: _Summary) -> None:
        kind = item[0]
        conn = self._conn
        if kind == "scalars":
            _, step, keys, tensors, numbers = item
            pairs = list(numbers)
            if tensors:
                pairs.extend(zip(keys, _to_host(tensors), strict=True))
            rows: list[tuple[object, ...]] = []
            levels: list[tuple[object, ...]] = []
            for key, value in pairs:
                kid = self._id(self._scalar_ids, "scalar_keys", "key", key)
                rows.append((kid, step, None if math.isnan(value) else value))
                casc = self._scalar_levels.get(kid)
                if casc is None:
                    casc = self._scalar_levels[kid] = _Cascade(kid)
                v = float(value)
                casc.push(step, v, ScalarBucket.of, levels)
                summary.scalars.add(key)
            conn.executemany("INSERT OR REPLACE INTO scalars (key_id, step, value) VALUES (?, ?, ?)", rows)
            _insert_scalar_levels(conn, levels)
            self._seen(step)
        elif kind == "layers":
            _, step, layers, metrics, values = item
            if isinstance(values, torch.Tensor):
                values = values.to(torch.float32).cpu().numpy()
            mat = np.ascontiguousarray(np.asarray(values, dtype=np.float32).T)  # [M, L]: rows contiguous
            n_all = len(self._layer_idx)
            cached = self._index_cache
            if cached is not None and cached[0] is layers and cached[1].shape[0] <= n_all:
                _, idx, dense = cached
                dense = dense and idx.shape[0] == n_all
            else:
                idx = np.array(
                    [self._id(self._layer_idx, "layers", "name", n) for n in layers], dtype=np.int64
                )
                n_all = len(self._layer_idx)
                dense = idx.shape[0] == n_all and bool(np.all(idx == np.arange(n_all)))
                self._index_cache = (layers, idx, dense)
            rows = []
            levels = []
            for j, metric in enumerate(metrics):
                mid = self._id(self._metric_ids, "metrics", "name", metric)
                if dense:
                    vec = mat[j]
                else:
                    vec = np.full(n_all, np.nan, dtype=np.float32)
                    vec[idx] = mat[j]
                rows.append((mid, step, vec.tobytes()))
                casc_l = self._layer_levels.get(mid)
                if casc_l is None:
                    casc_l = self._layer_levels[mid] = _Cascade(mid)
                casc_l.push(step, vec, LayerBucket.of, levels)
                summary.metrics.add(metric)
            conn.executemany(
                "INSERT OR REPLACE INTO layer_stats (metric_id, step, data) VALUES (?, ?, ?)", rows
            )
            _insert_layer_levels(conn, levels)
            self._seen(step)
        elif kind == "hist":
            _, step, hkind, layers, edges, counts = item
            e = _as_numpy(edges).astype(np.float64).tobytes()
            eid = self._edge_ids.get(e)
            if eid is None:
                eid = len(self._edge_ids) + 1
                conn.execute("INSERT INTO hist_edges (id, data) VALUES (?, ?)", (eid, e))
                self._edge_ids[e] = eid
            c = _as_numpy(counts).astype(np.float64)
            conn.executemany(
                "INSERT OR REPLACE INTO histograms (kind, layer, step, edges_id, counts) "
                "VALUES (?, ?, ?, ?, ?)",
                [(hkind, layer, step, eid, c[i].tobytes()) for i, layer in enumerate(layers)],
            )
            conn.executemany(
                "INSERT OR IGNORE INTO hist_layers (kind, layer) VALUES (?, ?)",
                [(hkind, layer) for layer in layers],
            )
            summary.histograms.add(hkind)
            self._seen(step)
        elif kind == "image":
            _, step, key, image, layer, ikind, meta = item
            if not isinstance(image, bytes):
                from ..render import to_png

                t = (
                    image.cpu()
                    if isinstance(image, torch.Tensor)
                    else torch.from_numpy(np.ascontiguousarray(image))
                )
                image = to_png(t)
            conn.execute(
                "INSERT INTO images (step, key, layer, kind, meta, png) VALUES (?, ?, ?, ?, ?, ?)",
                (step, key, layer, ikind, meta, image),
            )
            summary.images += 1
            self._seen(step)
        elif kind == "tensor":
            _, step, key, tensor = item
            t = tensor.cpu().contiguous()
            data = zlib.compress(t.reshape(-1).view(torch.uint8).numpy().tobytes(), 6)
            conn.execute(
                "INSERT OR REPLACE INTO tensors (key, step, dtype, shape, data) VALUES (?, ?, ?, ?, ?)",
                (key, step, str(t.dtype).removeprefix("torch."), json.dumps(list(t.shape)), data),
            )
            summary.tensors.add(key)
            self._seen(step)
        elif kind == "alert":
            a: Alert = item[1]
            conn.execute(
                "INSERT INTO alerts (step, layer, rule, value, message, severity) VALUES (?, ?, ?, ?, ?, ?)",
                (int(a.step), a.layer, a.rule, float(a.value), a.message, a.severity),
            )
            summary.alerts += 1
        elif kind == "tree":
            conn.execute("INSERT OR REPLACE INTO module_tree (id, nodes) VALUES (1, ?)", (item[1],))
            summary.module_tree = True
        elif kind == "text":
            _, key, text, step = item
            conn.execute("INSERT OR REPLACE INTO texts (key, step, text) VALUES (?, ?, ?)", (key, step, text))
            summary.texts.add(key)
        elif kind == "config":
            row = conn.execute("SELECT config FROM run WHERE id = 1").fetchone()
            merged = {**json.loads(row[0]), **json.loads(item[1])}
            conn.execute("UPDATE run SET config = ? WHERE id = 1", (_config_json(merged),))
            summary.config = True
        else:  # pragma: no cover - the training-thread API only queues the kinds above
            raise StoreError(f"internal: unknown record kind {kind!r}")


def _names(names: object, argument: str) -> tuple[str, ...]:
    if isinstance(names, str) or not isinstance(names, Sequence):
        raise ArgumentError(f"{argument}: expected a list of names, got {names!r}. Pass e.g. ['fc1', 'fc2'].")
    out = tuple(names)
    for n in out:
        if not isinstance(n, str) or not n:
            raise ArgumentError(f"{argument}: every entry must be a non-empty string, got {n!r}.")
    if len(set(out)) != len(out):
        dup = sorted({n for n in out if out.count(n) > 1})
        raise ArgumentError(f"{argument}: names must be unique, {dup} repeat. Pass each once.")
    return out


def _as_numpy(x: torch.Tensor | npt.NDArray[Any]) -> npt.NDArray[Any]:
    if isinstance(x, torch.Tensor):
        return x.to(torch.float64).cpu().numpy() if x.device.type == "cpu" else x.float().cpu().numpy()
    return np.asarray(x)


def _to_host(tensors: list[torch.Tensor]) -> list[float]:
    """One-element tensors to floats with one transfer per device (stacked first)."""
    out: list[float] = [0.0] * len(tensors)
    by_device: dict[torch.device, list[int]] = {}
    for i, t in enumerate(tensors):
        by_device.setdefault(t.device, []).append(i)
    for device, idx in by_device.items():
        dtype = torch.float64 if device.type == "cpu" else torch.float32
        stacked = torch.stack([tensors[i].reshape(()).to(dtype) for i in idx]).cpu().tolist()
        for i, v in zip(idx, stacked, strict=True):
            out[i] = float(v)
    return out


def _insert_scalar_levels(conn: sqlite3.Connection, rows: list[tuple[object, ...]]) -> None:
    if rows:
        conn.executemany(
            "INSERT OR REPLACE INTO scalar_levels (key_id, level, bucket, first_step, last_step, n, mn, "
            "mn_step, mx, mx_step, sm, cnt, last) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )


def _insert_layer_levels(conn: sqlite3.Connection, rows: list[tuple[object, ...]]) -> None:
    if rows:
        conn.executemany(
            "INSERT OR REPLACE INTO layer_levels (metric_id, level, bucket, first_step, last_step, n, mn, "
            "mx, sm, cnt, last) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
