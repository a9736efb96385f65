"""Live updates as server-sent events.

One stream per open page. Every ``POLL_S`` seconds the generator asks the run's reader
``changes_since(cursor)`` (a cheap query) and, when something changed, sends an ``change`` event with the
store's summary; every ``RUNS_EVERY`` polls it also checks the list of runs and sends ``runs`` when a
run appeared or changed status. With the store's writer committing at least every 0.25 s, a value logged
in training reaches the page within about 0.25 + 0.3 s plus the page's own fetch.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from anyio import to_thread
from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from .. import _data
from .._data import StoreAccess
from ._common import Access

router = APIRouter(prefix="/api", tags=["events"])

POLL_S = 0.3
RUNS_EVERY = 3
PING_EVERY = 30  # polls between keep-alive comments


def _event(name: str, data: Any) -> str:
    return f"event: {name}\ndata: {json.dumps(_data.jsonable(data), separators=(',', ':'))}\n\n"


def _runs_state(access: StoreAccess) -> list[list[Any]]:
    from .runs import read_runs

    runs, unreadable = read_runs(access)
    return [[r["name"], r["status"], r["last_step"]] for r in runs] + [
        [u["name"], "unreadable", None] for u in unreadable
    ]


def _changes(access: StoreAccess, run: str, cursor: int) -> tuple[int, dict[str, Any]]:
    new_cursor, summary = access.run(run).changes_since(cursor)
    return int(new_cursor), dict(summary)


async def _stream(request: Request, access: StoreAccess, run: str | None) -> AsyncIterator[str]:
    cursor = 0
    runs_state = await to_thread.run_sync(_runs_state, access)
    if run is not None:
        cursor, _ = await to_thread.run_sync(_changes, access, run, 0)
    yield "retry: 1000\n\n"
    yield _event("hello", {"run": run, "runs": runs_state})
    polls = 0
    while not request.app.state.closing:
        await asyncio.sleep(POLL_S)
        if await request.is_disconnected():
            return
        polls += 1
        if run is not None:
            cursor, summary = await to_thread.run_sync(_changes, access, run, cursor)
            if summary.get("changed"):
                yield _event("change", {"run": run, "summary": summary})
        if polls % RUNS_EVERY == 0:
            state = await to_thread.run_sync(_runs_state, access)
            if state != runs_state:
                runs_state = state
                yield _event("runs", {"runs": state})
        if polls % PING_EVERY == 0:
            yield ": ping\n\n"


@router.get("/events")
async def events(
    request: Request,
    access: Access,
    run: Annotated[str | None, Query(min_length=1, max_length=1000)] = None,
) -> StreamingResponse:
    """Server-sent events: ``hello`` once, then ``change`` (this run) and ``runs`` (the run list)."""
    if run is not None:
        await to_thread.run_sync(access.run, run)  # 404 now rather than inside the stream
    return StreamingResponse(
        _stream(request, access, run),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
