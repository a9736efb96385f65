"""Scalar series logged with ``run.log``, downsampled by the store (spikes kept)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query

from .. import _data
from ._common import Access, RunName, Step

router = APIRouter(prefix="/api", tags=["scalars"])

MaxPoints = Annotated[int, Query(ge=10, le=10000)]


@router.get("/scalars")
def scalars(
    *,
    access: Access,
    run: RunName,
    key: Annotated[str, Query(min_length=1, max_length=1000)],
    max_points: MaxPoints = 2000,
    start: Step = None,
    end: Step = None,
) -> dict[str, Any]:
    """One scalar series: ``{key, steps, values}`` (at most ``max_points`` points)."""
    r = access.run(run)
    keys = list(r.scalar_keys())
    if key not in keys:
        from ...errors import closest

        near = closest(key, keys)
        hint = f" Did you mean {', '.join(repr(n) for n in near)}?" if near else ""
        raise HTTPException(status_code=404, detail=f"key: run {run!r} has no scalar {key!r}.{hint}")
    steps, values = r.series(key, max_points=max_points, start=start, end=end)
    return {"key": key, "steps": _data.ints(steps), "values": _data.floats(values)}
