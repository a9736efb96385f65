"""The frozen records the store hands out: run summaries, alerts, image descriptions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Alert", "ImageInfo", "RunInfo", "StepCounter"]


@dataclass(frozen=True)
class RunInfo:
    """One run of a store.

    ``status`` is ``"running"``, ``"finished"`` or ``"failed"``; ``created`` and ``updated`` are Unix
    times (seconds); ``last_step`` is the highest step logged so far (``None`` before the first one).
    """

    name: str
    status: str
    created: float
    updated: float
    last_step: int | None
    config: dict[str, Any] = field(default_factory=dict)
    writing: bool | None = None


@dataclass(frozen=True)
class Alert:
    """A diagnosis: at ``step``, ``layer`` (module path, or ``None`` for the whole model) broke ``rule``.

    ``value`` is the statistic that broke it, ``message`` says it in words, ``severity`` is
    ``"info"``, ``"warning"`` or ``"error"``.
    """

    step: int
    layer: str | None
    rule: str
    value: float
    message: str
    severity: str = "warning"


@dataclass(frozen=True)
class ImageInfo:
    """An image kept in a run; fetch its PNG bytes with ``RunReader.image(info.id)``."""

    id: int
    step: int
    key: str
    layer: str | None
    kind: str
    meta: dict[str, Any] = field(default_factory=dict)


class StepCounter:
    """The step numbers a writer hands out (a run, the TensorBoard sink): a given step as it is, and
    ``None`` one after the last step given to the same writer method (``kind``), so that records of
    one kind written at explicit steps in delayed batches (the monitor's layer rows) never shift the
    numbering of another kind (a user's ``run.log(values)``). ``last``: the highest step of any kind."""

    def __init__(self, last: int = -1) -> None:
        self._start = self.last = last
        self._kinds: dict[str, int] = {}

    def take(self, step: int | None, kind: str) -> int:
        before = self._kinds.get(kind, self._start)
        s = before + 1 if step is None else step
        self.last = max(self.last, s)
        self._kinds[kind] = max(before, s)
        return s
