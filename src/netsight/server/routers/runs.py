"""Runs: the list, one run's overview, and the comparison of two runs."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException

from ...errors import StoreError
from .. import _data
from ._common import Access, RunName

router = APIRouter(prefix="/api", tags=["runs"])


def info_dict(info: Any, name: str) -> dict[str, Any]:
    """A ``RunInfo`` as JSON, under ``name``: the name the run is opened by (its file's name, which is
    not the name stored inside it when the file was renamed or copied)."""
    return {
        "name": name,
        "status": info.status,
        "created": _data.jsonable(info.created),
        "updated": _data.jsonable(info.updated),
        "last_step": _data.jsonable(info.last_step),
        "config": _data.jsonable(info.config or {}),
    }


@router.get("/health")
def health() -> dict[str, Any]:
    """Liveness, with the package version."""
    from ... import __version__

    return {"ok": True, "version": __version__}


def _read_info(access: Any, name: str) -> tuple[dict[str, Any] | None, str]:
    try:
        return info_dict(access.run(name).info, name), ""
    except HTTPException as exc:  # removed since it was listed
        return None, str(exc.detail)
    except StoreError as exc:  # damaged, or its writer has not laid it out yet
        return None, str(exc)


def read_runs(access: Any) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """``(runs newest first, unreadable)``: one damaged or half-created run file does not hide the others;
    it is listed under ``unreadable`` with the store's message."""
    store = access.store()
    runs: list[dict[str, Any]] = []
    unreadable: list[dict[str, str]] = []
    for name in store.names():
        info, error = _read_info(access, name)
        if info is not None:
            runs.append(info)
        else:
            unreadable.append({"name": name, "error": error})
    runs.sort(key=lambda r: (r["created"] or 0, r["name"]), reverse=True)
    return runs, unreadable


@router.get("/runs")
def list_runs(access: Access) -> dict[str, Any]:
    """Every readable run in the store, newest first, and the run files that cannot be read."""
    runs, unreadable = read_runs(access)
    return {"runs": runs, "unreadable": unreadable}


@router.get("/run")
def run_overview(access: Access, run: RunName) -> dict[str, Any]:
    """What one run holds: its info, scalar keys, layer metrics, histogram kinds, counts."""
    r = access.run(run)
    kinds = list(r.histogram_kinds())
    texts = list(r.texts())
    return {
        "info": info_dict(r.info, run),
        "scalar_keys": list(r.scalar_keys()),
        "layer_metrics": list(r.layer_metrics()),
        "layer_count": len(r.layers()),
        "histogram_kinds": kinds,
        "attention_keys": [t for t in texts if t.startswith("attention")],
        "alert_count": len(r.alerts()),
        "has_tree": bool(r.module_tree()),
    }


@router.get("/compare")
def compare(access: Access, a: RunName, b: RunName) -> dict[str, Any]:
    """Two runs side by side: infos, their configuration differences, the scalar keys they share."""
    ra, rb = access.run(a), access.run(b)
    ia, ib = info_dict(ra.info, a), info_dict(rb.info, b)
    ca, cb = ia["config"], ib["config"]
    diff = [
        {"key": k, "a": ca.get(k), "b": cb.get(k), "same": ca.get(k) == cb.get(k)}
        for k in sorted(set(ca) | set(cb))
    ]
    keys_a, keys_b = list(ra.scalar_keys()), set(rb.scalar_keys())
    return {
        "a": ia,
        "b": ib,
        "config": diff,
        "common_scalar_keys": [k for k in keys_a if k in keys_b],
    }
