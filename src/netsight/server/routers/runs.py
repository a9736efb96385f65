"""Runs: the list, one run's overview, and the comparison of two runs."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from .. import _data
from ._common import Access, RunName

router = APIRouter(prefix="/api", tags=["runs"])


def info_dict(info: Any) -> dict[str, Any]:
    """A ``RunInfo`` as JSON."""
    return {
        "name": info.name,
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


@router.get("/runs")
def list_runs(access: Access) -> dict[str, Any]:
    """Every run in the store, newest first."""
    runs = [info_dict(i) for i in access.store().runs()]
    runs.sort(key=lambda r: str(r["created"] or ""), reverse=True)
    return {"runs": runs}


@router.get("/run")
def run_overview(access: Access, run: RunName) -> dict[str, Any]:
    """What one run holds: its info, scalar keys, layer metrics, histogram kinds, counts."""
    r = access.run(run)
    kinds = list(r.histogram_kinds())
    texts = list(r.texts())
    return {
        "info": info_dict(r.info),
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
    ia, ib = info_dict(ra.info), info_dict(rb.info)
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
