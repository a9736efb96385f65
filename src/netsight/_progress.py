"""Progress bars for long work (tqdm, when it is installed), shared by every layer that loops.

``progress`` arguments take three values:

- ``None`` (the default of every explanation method): automatic. A bar appears only once the work has
  run for :data:`AUTO_AFTER` seconds, and only where tqdm would draw one (a terminal or a notebook,
  not a log file), so quick calls and scripts stay quiet and long ones show how far they are.
- ``True``: a bar at once, wherever output goes.
- ``False``: never.
"""

from __future__ import annotations

from typing import Any

__all__ = ["AUTO_AFTER", "progress_bar"]

#: With ``progress=None``, how long (seconds) work runs before its bar appears.
AUTO_AFTER = 2.0


def progress_bar(total: int, desc: str, progress: bool | None, *, unit: str = "sample") -> Any:
    """A tqdm bar over ``total`` units, or None (``progress=False``, nothing to do, or no tqdm)."""
    if progress is False or total <= 0:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    auto = progress is None
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        leave=False,
        delay=AUTO_AFTER if auto else 0.0,
        disable=None if auto else False,  # None: tqdm's own rule, off when output is not a terminal
    )
