"""Hugging Face ``Trainer``: ``Trainer(..., callbacks=[NetsightTrainerCallback("netsight-runs")])``.

The callback watches the model from ``on_train_begin`` to ``on_train_end``: gradients are read in
``on_pre_optimizer_step`` (after backward and gradient clipping, before the weights change), everything
else in ``on_optimizer_step``, at ``state.global_step`` (the number of optimizer steps before this
one). The trainer's logs (loss, learning rate, ...) go to the same run at their step. Only the main
process writes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

try:
    from transformers import TrainerCallback
except ImportError as exc:
    raise ImportError(
        "netsight.monitor.integrations.hf needs transformers: pip install 'netsight[hf]'."
    ) from exc

from .._watch import Monitor, watch
from ._common import open_or_borrow, scalars

__all__ = ["NetsightTrainerCallback"]


class NetsightTrainerCallback(TrainerCallback):
    """Watch a ``transformers.Trainer`` run with :func:`netsight.watch`.

    Args:
        directory: store directory for a new run (when ``run`` is None).
        name: run name (default: the trainer's ``run_name`` if set, else generated).
        run: an open run to write to instead (not closed by the callback).
        **watch_options: passed to :func:`netsight.watch`.
    """

    def __init__(
        self,
        directory: str | Path = "netsight-runs",
        *,
        name: str | None = None,
        run: Any = None,
        **watch_options: Any,
    ) -> None:
        self.directory = directory
        self.name = name
        self.options = watch_options
        self._given_run = run
        self.run: Any = None
        self.monitor: Monitor | None = None
        self._owned = False

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if model is None:
            return
        if state.is_world_process_zero:
            name = self.name or getattr(args, "run_name", None)
            config = {"trainer": "transformers", "learning_rate": float(args.learning_rate)}
            self.run, self._owned = open_or_borrow(self._given_run, self.directory, name, config)
        self.monitor = watch(model, run=self.run, start_step=state.global_step, **self.options)

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.monitor is not None and not self.monitor.closed:
            self.monitor.before_update(step=state.global_step)

    def on_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.monitor is not None and not self.monitor.closed:
            self.monitor.step(step=state.global_step)

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
        if self.run is not None and logs:
            values = scalars(logs)
            if values:
                self.run.log(values, step=state.global_step)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        mon, self.monitor = self.monitor, None
        try:
            if mon is not None:
                mon.close()
        finally:
            run, self.run = self.run, None
            if run is not None and self._owned:
                run.close()
