"""``create_app(store_dir, token=None)``: the dashboard's FastAPI application."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ArgumentError, StoreError

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["create_app"]


def create_app(store_dir: str | Path = "netsight-runs", token: str | None = None) -> FastAPI:
    """The read-only dashboard application over the run store in ``store_dir``.

    ``token``: when given, every request must carry it (see :mod:`netsight.server._security`); when
    ``None``, the application answers requests addressed to a loopback host only. The store directory
    must exist (``netsight.store.open`` is checked once here, so that a wrong path fails at start, not on
    the first request).
    """
    try:
        from fastapi import FastAPI, Request
        from fastapi.responses import JSONResponse
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            f"netsight's dashboard needs fastapi, uvicorn and plotly ({exc}); install them with "
            "pip install 'netsight[server]'."
        ) from exc

    from .. import __version__
    from ..errors import RunNotFoundError
    from . import routers
    from ._data import StoreAccess
    from ._security import SecurityMiddleware

    if token is not None and (not isinstance(token, str) or len(token) < 8):
        raise ArgumentError(
            f"token: got {token!r}; pass a string of at least 8 characters, or None to serve without one "
            "(loopback only)."
        )
    path = Path(store_dir)
    if not path.is_dir():
        raise StoreError(
            f"store_dir: {str(path)!r} is not a directory; pass the directory given to "
            "ns.open_run(...) (default 'netsight-runs'), or start a run first."
        )
    access = StoreAccess(path)
    access.store()  # fail now, with the store's own message, when this is not a store

    app = FastAPI(
        title="netsight dashboard",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    app.state.access = access
    app.state.closing = False
    for router in routers.ALL:
        app.include_router(router)

    @app.exception_handler(RunNotFoundError)
    async def _run_not_found(_request: Request, exc: RunNotFoundError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(StoreError)
    async def _store_error(_request: Request, exc: StoreError) -> JSONResponse:
        # e.g. a run whose writer has not laid out its file yet: the page retries on the next event
        return JSONResponse({"detail": str(exc)}, status_code=503)

    @app.exception_handler(ArgumentError)
    async def _bad_argument(_request: Request, exc: ArgumentError) -> JSONResponse:
        status = 404 if isinstance(exc, LookupError) else 400
        return JSONResponse({"detail": str(exc)}, status_code=status)

    app.add_middleware(SecurityMiddleware, token=token)
    return app
