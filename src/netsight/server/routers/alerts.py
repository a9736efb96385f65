"""Alerts raised by the monitor's detectors."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from .. import _data
from ._common import Access, RunName

router = APIRouter(prefix="/api", tags=["alerts"])


@router.get("/alerts")
def alerts(access: Access, run: RunName) -> dict[str, Any]:
    """``{alerts: [{step, layer, rule, value, message, severity}]}`` in step order."""
    r = access.run(run)
    out = [
        {
            "step": _data.jsonable(a.step),
            "layer": a.layer,
            "rule": a.rule,
            "value": _data.jsonable(a.value),
            "message": a.message,
            "severity": getattr(a, "severity", "warning"),
        }
        for a in r.alerts()
    ]
    out.sort(key=lambda a: a["step"] if isinstance(a["step"], int) else -1)
    return {"alerts": out}
