"""netsight's exceptions: one hierarchy, every message names the argument, the value and the fix.

::

    NetsightError                      base of everything netsight raises on purpose
    ├── ArgumentError (ValueError)     a bad argument value: names it, shows it, says what to pass
    │   ├── SelectorError (LookupError)  a layer selector matched nothing; lists the nearest names
    │   ├── UnknownNameError (LookupError) a registry miss (method, reducer, ...); suggests names
    │   └── TargetError                a bad ``target`` for an explanation
    ├── CaptureError (RuntimeError)    capture cannot be done as asked (grads under no_grad,
    │                                  a torch.compile'd model, a block re-entered, ...)
    ├── ExplainError (RuntimeError)    an explanation method failed on this model or input
    ├── AttentionError (RuntimeError)  attention weights could not be captured from a module
    ├── StoreError (RuntimeError)      the run store cannot be opened, read or written
    │   └── RunNotFoundError (LookupError)
    └── AlertError (RuntimeError)      raised by ``watch(raise_on=...)`` when a detector fires

    NetsightWarning (UserWarning)
    └── CaptureBudgetWarning           a capture reached ``max_bytes`` and keeps reductions only

Every error raised while handling another is raised ``from`` it. Nothing is swallowed.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path

__all__ = [
    "AlertError",
    "ArgumentError",
    "AttentionError",
    "CaptureBudgetWarning",
    "CaptureError",
    "ExplainError",
    "NetsightError",
    "NetsightWarning",
    "RunNotFoundError",
    "SelectorError",
    "StoreError",
    "TargetError",
    "UnknownNameError",
    "closest",
]


class NetsightError(Exception):
    """Base class of every exception netsight raises on purpose."""


class ArgumentError(NetsightError, ValueError):
    """An argument has a value netsight cannot use. The message names it and says what to pass."""


class SelectorError(ArgumentError, LookupError):
    """A layer selector (path, glob, type or predicate) matched no module of the model."""

    def __str__(self) -> str:  # LookupError would quote the message like a KeyError; keep it plain
        return str(self.args[0]) if self.args else ""


class UnknownNameError(ArgumentError, LookupError):
    """A name looked up in a registry (a method, a reducer, a colour map) is not registered."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class TargetError(ArgumentError):
    """The ``target`` of an explanation does not fit the model's output."""


class CaptureError(NetsightError, RuntimeError):
    """A capture cannot be done as asked; the message says what to change."""


class ExplainError(NetsightError, RuntimeError):
    """An explanation method failed on this model or input."""


class AttentionError(NetsightError, RuntimeError):
    """Attention weights could not be captured from a module."""


class StoreError(NetsightError, RuntimeError):
    """The run store cannot be opened, read or written."""


class RunNotFoundError(StoreError, LookupError):
    """No run of that name in the store."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class AlertError(NetsightError, RuntimeError):
    """A monitor detector fired and ``raise_on`` asked for an exception.

    ``alert`` holds the :class:`netsight.monitor.Alert` that fired.
    """

    def __init__(self, message: str, alert: object = None) -> None:
        super().__init__(message)
        self.alert = alert


class NetsightWarning(UserWarning):
    """Base class of the warnings netsight emits."""


class CaptureBudgetWarning(NetsightWarning):
    """A capture reached its ``max_bytes`` budget; from then on it keeps reductions only."""


def user_stacklevel() -> int:
    """The ``stacklevel`` for ``warnings.warn`` called right here that points at the first frame outside
    netsight and torch: the user's line (a warning raised inside a hook would otherwise name a line of
    ``torch/nn/modules/module.py``)."""
    import sys
    from types import FrameType

    skip = (str(Path(__file__).resolve().parent), str(Path(_torch_file()).resolve().parent))
    level = 1
    frame: FrameType | None = sys._getframe(1)  # the function calling warnings.warn
    while frame is not None and str(Path(frame.f_code.co_filename).resolve()).startswith(skip):
        frame = frame.f_back
        level += 1
    return level


def _torch_file() -> str:
    import torch

    return str(torch.__file__)


def closest(name: str, candidates: Iterable[str], n: int = 5) -> list[str]:
    """The candidates nearest to ``name``: close spellings first, then those sharing a part."""
    pool = list(dict.fromkeys(candidates))
    near = difflib.get_close_matches(name, pool, n=n, cutoff=0.5)
    if len(near) < n:
        low = name.lower()
        parts = [p for p in low.replace("_", ".").split(".") if p and not p.isdigit()]
        for c in pool:
            if c in near:
                continue
            cl = c.lower()
            if low in cl or any(p in cl for p in parts):
                near.append(c)
            if len(near) >= n:
                break
    return near[:n]
