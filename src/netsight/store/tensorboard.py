"""Opt-in TensorBoard output, and :class:`Tee`, which sends every record to several sinks.

:class:`TensorBoardSink` has the writer methods of :class:`netsight.store.Run` and turns them into
``torch.utils.tensorboard.SummaryWriter`` calls (imported on first use; install
``netsight[tensorboard]``):

* ``log`` -> ``add_scalar(key)``; ``log_layers`` -> ``add_scalar("{metric}/{layer}")`` (one host transfer
  for the whole matrix; restrict with ``layer_metrics=`` since TensorBoard keeps one series per tag);
* ``log_histograms`` -> ``add_histogram_raw("{kind}/{layer}")`` with the bins as given. TensorBoard
  wants a right limit per bucket: the underflow bucket gets ``edges[0]``, the overflow bucket
  ``edges[-1]`` plus the last bin's width. ``min``/``max``/``sum``/``sum_squares`` are not in a binned
  histogram; they are estimated from the bin limits of the non-empty buckets and their centres;
* ``log_image``/``log_explanation`` -> ``add_image("{kind}/{key}")`` (PNG bytes are decoded with Pillow);
* ``log_text``, ``log_alert`` (as ``alerts/{rule}``) and ``set_config`` (as ``config``) -> ``add_text``;
* ``log_tensor`` and ``log_module_tree`` have no TensorBoard counterpart and write nothing there.

Unlike the run store, this sink converts on the calling thread (``SummaryWriter`` does), so it costs
training time; use it for what you want to see in TensorBoard, and the store for everything.

``Tee(run, TensorBoardSink("tb"))`` forwards each call to every sink, in order, and can be passed
wherever a run is expected (``ns.watch(model, run=Tee(...))``).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import ArgumentError, StoreError
from ._types import Alert, StepCounter

__all__ = ["TensorBoardSink", "Tee"]

logger = logging.getLogger("netsight")


def _host(x: Any) -> npt.NDArray[Any]:
    if hasattr(x, "detach"):
        return np.asarray(x.detach().cpu().numpy())
    return np.asarray(x)


class TensorBoardSink:
    """Write run records as TensorBoard events in ``logdir`` (see the module docstring)."""

    def __init__(
        self,
        logdir: str | os.PathLike[str],
        *,
        layer_metrics: Sequence[str] | None = None,
        flush_secs: int = 10,
    ) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            raise StoreError(
                "logdir: the TensorBoard sink needs the tensorboard package. Install it with "
                "pip install 'netsight[tensorboard]'."
            ) from exc
        self.logdir = str(logdir)
        self.layer_metrics = None if layer_metrics is None else set(layer_metrics)
        self._writer = SummaryWriter(log_dir=self.logdir, flush_secs=flush_secs)
        self._steps = StepCounter()
        self._closed = False

    @property
    def step(self) -> int:
        return self._steps.last

    def _take(self, step: int | None, kind: str) -> int:
        """``step``, or one after the last step this writer method (``kind``) was given."""
        if self._closed:
            raise StoreError(f"logdir: the TensorBoard sink for {self.logdir!r} is closed.")
        return self._steps.take(None if step is None else int(step), kind)

    def log(self, values: Mapping[str, object], step: int | None = None) -> None:
        s = self._take(step, "scalars")
        keys = list(values)
        host = [float(_host(values[k]).reshape(-1)[0]) for k in keys] if keys else []
        for k, v in zip(keys, host, strict=True):
            self._writer.add_scalar(k, v, s)

    def log_layers(
        self, step: int | None, layers: Sequence[str], metrics: Sequence[str], values: Any
    ) -> None:
        s = self._take(step, "layers")
        mat = _host(values).astype(np.float64)
        for j, metric in enumerate(metrics):
            if self.layer_metrics is not None and metric not in self.layer_metrics:
                continue
            for i, layer in enumerate(layers):
                if not np.isnan(mat[i, j]):
                    self._writer.add_scalar(f"{metric}/{layer}", float(mat[i, j]), s)

    def log_histograms(
        self,
        step: int | None,
        kind: str,
        layers: Sequence[str],
        edges: Any,
        counts: Any,
    ) -> None:
        s = self._take(step, "hist")
        e = _host(edges).astype(np.float64)
        c = _host(counts).astype(np.float64)
        if e.ndim != 1 or c.shape != (len(layers), e.shape[0] + 1):
            raise ArgumentError(
                f"counts: expected shape [len(layers), len(edges) + 1] = [{len(layers)}, {e.shape[0] + 1}], "
                f"got {c.shape}."
            )
        width = e[-1] - e[-2] if e.shape[0] > 1 else 1.0
        limits = np.append(e, e[-1] + width)  # right limit of each bucket
        lefts = np.concatenate([[e[0] - width], e])  # left limit of each bucket
        centres = (lefts + limits) / 2
        for i, layer in enumerate(layers):
            row = c[i]
            nz = np.flatnonzero(row)
            if nz.size == 0:
                continue
            self._writer.add_histogram_raw(
                f"{kind}/{layer}",
                min=float(lefts[nz[0]]),
                max=float(limits[nz[-1]]),
                num=float(row.sum()),
                sum=float((row * centres).sum()),
                sum_squares=float((row * centres**2).sum()),
                bucket_limits=limits.tolist(),
                bucket_counts=row.tolist(),
                global_step=s,
            )

    def log_image(  # noqa: PLR0917 - the positional signature of Run.log_image
        self,
        step: int | None,
        key: str,
        image: Any,
        layer: str | None = None,
        kind: str = "image",
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        s = self._take(step, "image")
        if isinstance(image, (bytes, bytearray, memoryview)):
            import io

            from PIL import Image

            arr = np.asarray(Image.open(io.BytesIO(bytes(image))))
        else:
            arr = _host(image)
        if arr.dtype != np.uint8 or arr.ndim not in (2, 3):
            raise ArgumentError(f"image: expected uint8 [H, W] or [H, W, C], got {arr.dtype} {arr.shape}.")
        self._writer.add_image(f"{kind}/{key}", arr, s, dataformats="HW" if arr.ndim == 2 else "HWC")

    def log_explanation(
        self,
        step: int | None,
        method: str,
        image_index: int,
        image: Any,
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        self.log_image(step, f"{method}/{image_index}", image, kind="explanation", meta=meta)

    def log_tensor(self, step: int | None, key: str, tensor: Any) -> None:
        """TensorBoard has no place for raw tensors: nothing is written (the run store keeps them)."""
        self._take(step, "tensor")

    def log_alert(self, alert: Alert) -> None:
        self._take(alert.step, "alert")
        self._writer.add_text(f"alerts/{alert.rule}", f"[{alert.severity}] {alert.message}", alert.step)

    def log_module_tree(self, nodes: Sequence[Mapping[str, Any]]) -> None:
        """TensorBoard's graph needs a traced model, not a tree: nothing is written."""

    def log_text(self, key: str, text: str, step: int | None = None) -> None:
        self._writer.add_text(key, text, self._take(step, "text"))

    def set_config(self, config: Mapping[str, Any]) -> None:
        self._writer.add_text(
            "config", json.dumps(dict(config), default=str, indent=1), max(self._steps.last, 0)
        )

    def flush(self) -> None:
        self._writer.flush()

    def close(self, status: str | None = None) -> None:
        if not self._closed:
            self._closed = True
            self._writer.close()

    def __enter__(self) -> TensorBoardSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"TensorBoardSink({self.logdir!r})"


_METHODS = (
    "log",
    "log_layers",
    "log_histograms",
    "log_image",
    "log_explanation",
    "log_tensor",
    "log_alert",
    "log_module_tree",
    "log_text",
    "set_config",
    "flush",
)


class Tee:
    """Forward every writer call to each sink in turn (a :class:`~netsight.store.Run`, a
    :class:`TensorBoardSink`, anything with the same methods). Attributes such as ``name``,
    ``store_dir`` and ``step`` come from the first sink that has them."""

    def __init__(self, *sinks: Any) -> None:
        if not sinks:
            raise ArgumentError("sinks: Tee needs at least one sink, e.g. Tee(run, TensorBoardSink('tb')).")
        for sink in sinks:
            if not callable(getattr(sink, "log", None)):
                raise ArgumentError(f"sinks: {sink!r} has no log() method; pass runs or sinks.")
        self.sinks = tuple(sinks)

    def __getattr__(self, name: str) -> Any:
        if name in _METHODS:

            def forward(*args: Any, **kwargs: Any) -> None:
                for sink in self.sinks:
                    method = getattr(sink, name, None)
                    if method is not None:
                        method(*args, **kwargs)

            return forward
        for sink in self.sinks:
            if hasattr(sink, name):
                return getattr(sink, name)
        raise AttributeError(f"none of the sinks of this Tee has {name!r}")

    def close(self, status: str | None = None) -> None:
        """Close every sink; the first error is raised after all were tried (the others are logged)."""
        first: BaseException | None = None
        for sink in self.sinks:
            try:
                sink.close(status) if status is not None else sink.close()
            except Exception as exc:  # noqa: PERF203 - re-raised below after closing the rest
                if first is None:
                    first = exc
                else:
                    logger.error("netsight: closing %r also failed", sink, exc_info=exc)
        if first is not None:
            raise first

    def __enter__(self) -> Tee:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        self.close("failed" if exc_type is not None else "finished")

    def __repr__(self) -> str:
        return f"Tee({', '.join(map(repr, self.sinks))})"
