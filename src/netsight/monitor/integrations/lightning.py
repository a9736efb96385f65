"""PyTorch Lightning: ``Trainer(callbacks=[NetsightCallback("netsight-runs")])``.

The callback watches the ``LightningModule`` from ``on_train_start`` to the end of fitting (or an
exception): gradients are read in ``on_before_optimizer_step`` (after backward, before the weights
change, so a NaN is traced back before the update spreads it), everything else is collected in
``on_train_batch_end`` when an optimizer step happened (gradient accumulation is respected), at
``trainer.global_step``. Scalars the module logs (``self.log``) are written too. Only global rank 0
writes; statistics are reduced across ranks (see :func:`netsight.watch`'s ``distributed``).

Works with ``lightning`` (``lightning.pytorch``) or the older ``pytorch_lightning`` package, whichever
is installed (``lightning`` first).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

try:
    from lightning.pytorch import Callback
except ImportError:  # the standalone package
    try:
        from pytorch_lightning import Callback
    except ImportError as exc:
        raise ImportError(
            "netsight.monitor.integrations.lightning needs PyTorch Lightning: "
            "pip install 'netsight[lightning]' (or pytorch-lightning)."
        ) from exc

from .._watch import Monitor, watch
from ._common import open_or_borrow, scalars

__all__ = ["NetsightCallback"]


class NetsightCallback(Callback):  # type: ignore[misc]
    """Watch a Lightning training run with :func:`netsight.watch`.

    Args:
        directory: store directory for a new run (when ``run`` is None).
        name: run name (default: generated).
        run: an open run to write to instead (not closed by the callback).
        log_metrics: also write the scalars in ``trainer.callback_metrics`` at each collected step.
        **watch_options: passed to :func:`netsight.watch` (``every``, ``stats``, ``heavy``, ``detectors``,
            ``raise_on``, ...).
    """

    def __init__(
        self,
        directory: str | Path = "netsight-runs",
        *,
        name: str | None = None,
        run: Any = None,
        log_metrics: bool = True,
        **watch_options: Any,
    ) -> None:
        super().__init__()
        self.directory = directory
        self.name = name
        self.log_metrics = log_metrics
        self.options = watch_options
        self._given_run = run
        self.run: Any = None
        self.monitor: Monitor | None = None
        self._owned = False
        self._seen_step = -1

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        if trainer.is_global_zero:
            self.run, self._owned = open_or_borrow(
                self._given_run, self.directory, self.name, {"trainer": "lightning"}
            )
        self._seen_step = trainer.global_step
        self.monitor = watch(pl_module, run=self.run, start_step=trainer.global_step, **self.options)

    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        if self.monitor is not None and not self.monitor.closed:
            self.monitor.before_update(step=trainer.global_step)

    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        mon = self.monitor
        if mon is None or mon.closed or trainer.global_step == self._seen_step:
            return  # no optimizer step in this batch (gradient accumulation)
        step = trainer.global_step - 1
        self._seen_step = trainer.global_step
        mon.step(step=step)
        if self.run is not None and self.log_metrics:
            values = scalars(trainer.callback_metrics)
            loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
            if loss is not None and getattr(loss, "ndim", None) == 0:
                values.setdefault("loss", loss.detach())
            if values:
                self.run.log(values, step=step)

    def _finish(self, status: str | None) -> None:
        mon, self.monitor = self.monitor, None
        try:
            if mon is not None:
                mon.close()
        finally:
            run, self.run = self.run, None
            if run is not None and self._owned:
                run.close(status=status)

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        self._finish(None)

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self._finish("failed")
