"""Progress bars for long work (tqdm, when it is installed), shared by every layer that loops.

``progress`` arguments take three values:

- ``None`` (the default of every explanation method): automatic. Nothing is drawn, and tqdm is not even
  imported, until the work has run for :data:`AUTO_AFTER` seconds; from then on a bar shows how far it
  is, where tqdm would draw one (a terminal or a notebook, not a log file). Quick calls cost nothing.
- ``True`` (or any true value): a bar at once, wherever output goes.
- ``False`` (or any false value but ``None``): never.
"""

from __future__ import annotations

import time
from typing import Any

__all__ = ["AUTO_AFTER", "progress_bar"]

#: With ``progress=None``, how long (seconds) work runs before its bar appears.
AUTO_AFTER = 2.0


def _tqdm(total: int, desc: str, unit: str, *, initial: int = 0, auto: bool = False) -> Any:
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        initial=initial,
        leave=False,
        disable=None if auto else False,  # None: tqdm's own rule, off when output is not a terminal
    )


class _LateBar:
    """A bar that only comes into being once its work has run for :data:`AUTO_AFTER` seconds."""

    def __init__(self, total: int, desc: str, unit: str) -> None:
        self.total, self.desc, self.unit = total, desc, unit
        self.n = 0
        self.start = time.monotonic()
        self.after = AUTO_AFTER
        self.bar: Any = None
        self._given_up = False

    def update(self, k: int = 1) -> None:
        self.n += k
        if self.bar is not None:
            self.bar.update(k)
        elif not self._given_up and time.monotonic() - self.start >= self.after:
            self.bar = _tqdm(self.total, self.desc, self.unit, initial=self.n, auto=True)
            self._given_up = self.bar is None  # no tqdm: stop asking

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def progress_bar(total: int, desc: str, progress: Any, *, unit: str = "sample") -> Any:
    """An object with ``update(k)`` and ``close()`` over ``total`` units, or None (``progress`` false,
    nothing to do, or ``progress=True`` without tqdm installed)."""
    if total <= 0 or (progress is not None and not progress):
        return None
    if progress is None:
        return _LateBar(total, desc, unit)
    return _tqdm(total, desc, unit)
