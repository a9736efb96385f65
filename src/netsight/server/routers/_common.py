"""Dependencies shared by the routers."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Query, Request

from .._data import StoreAccess

__all__ = ["INT64_MAX", "Access", "RunName", "Step", "reader"]


def _access(request: Request) -> StoreAccess:
    access: StoreAccess = request.app.state.access
    return access


Access = Annotated[StoreAccess, Depends(_access)]
RunName = Annotated[str, Query(min_length=1, max_length=1000, description="run name")]
# steps and ids are SQLite integers: a larger number is a 422, not an OverflowError inside the store
INT64_MAX = 2**63 - 1
Step = Annotated[int | None, Query(ge=-INT64_MAX - 1, le=INT64_MAX, description="a step")]


def reader(access: StoreAccess, run: str) -> Any:
    """The run's reader (HTTP 404 naming the nearest runs on a miss)."""
    return access.run(run)
