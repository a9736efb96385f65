"""Texts logged with ``run.log_text`` (attention pages): their keys, and each served sandboxed.

A text is served as HTML under ``Content-Security-Policy: sandbox allow-scripts`` with no network access:
its scripts run in an opaque origin that can neither read this server's API nor reach the network.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import Response

from ...errors import closest
from ._common import Access, RunName

router = APIRouter(prefix="/api", tags=["texts"])

SANDBOX_CSP = (
    "sandbox allow-scripts; default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; "
    "style-src 'unsafe-inline'; img-src data: blob:; font-src data:; frame-ancestors 'self'"
)


@router.get("/texts")
def texts(access: Access, run: RunName, prefix: Annotated[str, Query(max_length=200)] = "") -> dict[str, Any]:
    """The keys of the run's texts that start with ``prefix``."""
    r = access.run(run)
    return {"keys": [k for k in r.texts() if k.startswith(prefix)]}


@router.get("/text")
def text(access: Access, run: RunName, key: Annotated[str, Query(min_length=1, max_length=1000)]) -> Response:
    """One text as a sandboxed HTML page (its own scripts run, isolated from the dashboard)."""
    r = access.run(run)
    keys = list(r.texts())
    if key not in keys:
        near = closest(key, keys)
        hint = f" Did you mean {', '.join(repr(n) for n in near)}?" if near else ""
        raise HTTPException(status_code=404, detail=f"key: run {run!r} has no text {key!r}.{hint}")
    return Response(
        content=r.text(key),
        media_type="text/html; charset=utf-8",
        headers={"Content-Security-Policy": SANDBOX_CSP, "X-Frame-Options": "SAMEORIGIN"},
    )
