"""The front-end: ``/`` (the page), ``/static/...`` (its files) and ``/static/vendor/plotly.min.js``.

A requested path is resolved and must stay inside ``static/`` (no ``..``, no absolute path, no symlink
out, no encoded variant): anything else is a 404. plotly.js comes from the installed ``plotly`` Python
package (``plotly/package_data/plotly.min.js``): nothing is fetched from the network.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, RedirectResponse

router = APIRouter(tags=["static"])

STATIC_DIR = (Path(__file__).resolve().parent.parent / "static").resolve()
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}
_NO_CACHE = {"Cache-Control": "no-cache"}


@lru_cache(maxsize=1)
def plotly_js() -> Path:
    """The path of ``plotly.min.js`` bundled with the installed ``plotly`` package."""
    spec = importlib.util.find_spec("plotly")
    if spec is None or not spec.submodule_search_locations:
        raise HTTPException(
            status_code=500,
            detail="plotly is not installed: pip install 'netsight[server]' (it ships plotly.js).",
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "package_data" / "plotly.min.js"
    if not path.is_file():
        raise HTTPException(
            status_code=500,
            detail=f"plotly.js is missing at {path}; reinstall plotly (pip install -U plotly).",
        )
    return path


def safe_static_path(relative: str) -> Path | None:
    """``static/<relative>`` when it is a servable file inside ``static/``, else ``None``."""
    if not relative or "\\" in relative or "\x00" in relative or relative.startswith("/"):
        return None
    parts = relative.split("/")
    if any(p in ("", ".", "..") or p.startswith(".") for p in parts):
        return None
    candidate = (STATIC_DIR / relative).resolve()
    if not candidate.is_relative_to(STATIC_DIR) or not candidate.is_file():
        return None
    if candidate.suffix not in _TYPES:
        return None
    return candidate


@router.get("/", include_in_schema=False)
def index() -> FileResponse:
    """The single page."""
    return FileResponse(STATIC_DIR / "index.html", media_type=_TYPES[".html"], headers=_NO_CACHE)


@router.get("/index.html", include_in_schema=False)
def index_html() -> RedirectResponse:
    """``/index.html`` is ``/``."""
    return RedirectResponse("/", status_code=308)


@router.get("/static/vendor/plotly.min.js", include_in_schema=False)
def plotly() -> FileResponse:
    """plotly.js from the installed ``plotly`` package."""
    return FileResponse(
        plotly_js(), media_type=_TYPES[".js"], headers={"Cache-Control": "public, max-age=86400"}
    )


@router.get("/static/{relative:path}", include_in_schema=False)
def static_file(relative: str) -> FileResponse:
    """A file of the front-end; 404 for anything outside ``static/``."""
    path = safe_static_path(relative)
    if path is None:
        raise HTTPException(status_code=404, detail="Not found.")
    return FileResponse(path, media_type=_TYPES[path.suffix], headers=_NO_CACHE)
