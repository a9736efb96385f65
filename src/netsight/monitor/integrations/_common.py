"""What both trainer callbacks share: opening (or borrowing) a run and logging user scalars."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ...errors import ArgumentError


def open_or_borrow(
    run: Any, directory: str | Path, name: str | None, config: Mapping[str, Any]
) -> tuple[Any, bool]:
    """``(run, owned)``: the given run, or a new one in ``directory`` (owned: closed by the callback)."""
    if run is not None:
        if not callable(getattr(run, "log_layers", None)):
            raise ArgumentError(
                f"run: expected a run from ns.open_run(...), got {type(run).__name__}. Pass run=None to "
                "let the callback open one in `directory`."
            )
        return run, False
    from ...store import open_run

    return open_run(directory, name=name, config=dict(config)), True


def scalars(logs: Mapping[str, Any]) -> dict[str, Any]:
    """The numeric entries of a trainer's log dict (numbers and 0-d tensors), without conversions."""
    out: dict[str, Any] = {}
    for key, value in logs.items():
        if isinstance(value, bool):
            continue
        number = isinstance(value, (int, float))
        if number or (getattr(value, "ndim", None) == 0 and hasattr(value, "dtype")):
            out[str(key)] = value
    return out
