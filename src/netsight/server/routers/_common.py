"""Dependencies shared by the routers."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Query, Request

from .._data import StoreAccess

__all__ = ["Access", "RunName", "reader"]


def _access(request: Request) -> StoreAccess:
    access: StoreAccess = request.app.state.access
    return access


Access = Annotated[StoreAccess, Depends(_access)]
RunName = Annotated[str, Query(min_length=1, max_length=1000, description="run name")]


def reader(access: StoreAccess, run: str) -> Any:
    """The run's reader (HTTP 404 naming the nearest runs on a miss)."""
    return access.run(run)
