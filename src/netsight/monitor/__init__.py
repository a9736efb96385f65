"""The training monitor: ``ns.watch(model, optimizer=opt, run=run)``.

It decides *when* to look (:mod:`.schedule`, anomaly-triggered writing of a ring buffer) and *what it
means* (:mod:`.detectors`); the capture core's hooks and reducers do the looking; the run store keeps
the result. Integrations for PyTorch Lightning and Hugging Face ``Trainer`` are in
:mod:`netsight.monitor.integrations` (behind the ``lightning`` and ``hf`` extras).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._watch import METRICS, Monitor, StepRecord, watch
from .detectors import RULES, Finding
from .schedule import Every, LogSchedule

if TYPE_CHECKING:  # pragma: no cover
    from ..store import Alert

__all__ = ["METRICS", "RULES", "Alert", "Every", "Finding", "LogSchedule", "Monitor", "StepRecord", "watch"]


def __getattr__(name: str) -> Any:
    if name == "Alert":  # defined by the run store; imported on first use
        from ..store import Alert

        return Alert
    raise AttributeError(f"module 'netsight.monitor' has no attribute {name!r}")
