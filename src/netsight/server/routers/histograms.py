"""Histograms over time: one layer's counts as a bins x steps matrix."""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, HTTPException, Query

from ...errors import closest
from .. import _data
from ._common import Access, RunName

router = APIRouter(prefix="/api", tags=["histograms"])

Kind = Annotated[str, Query(min_length=1, max_length=200, description="grad | weight | activation | ...")]


@router.get("/histograms/layers")
def histogram_layers(
    access: Access,
    run: RunName,
    kind: Kind,
    filter: Annotated[str | None, Query(max_length=1000)] = None,  # noqa: A002
) -> dict[str, Any]:
    """The layers with histograms of ``kind`` (filtered by glob)."""
    r = access.run(run)
    return {"kind": kind, "layers": _data.filter_layers(list(r.histogram_layers(kind)), filter)}


@router.get("/histograms")
def histograms(
    access: Access,
    run: RunName,
    layer: Annotated[str, Query(min_length=1, max_length=1000)],
    kind: Kind,
    max_steps: Annotated[int, Query(ge=1, le=2000)] = 200,
) -> dict[str, Any]:
    """``{steps, edges, counts}``: counts[S][E+1] (bin 0 below edges[0], bin E above edges[-1])."""
    r = access.run(run)
    layers = list(r.histogram_layers(kind))
    if layer not in layers:
        near = closest(layer, layers)
        hint = f" Did you mean {', '.join(repr(n) for n in near)}?" if near else ""
        raise HTTPException(
            status_code=404, detail=f"layer: run {run!r} has no {kind!r} histograms for {layer!r}.{hint}"
        )
    steps, edges, counts = r.histograms(layer, kind, max_steps=max_steps)
    counts = np.asarray(counts, dtype=np.float64)
    return {
        "layer": layer,
        "kind": kind,
        "steps": _data.ints(steps),
        "edges": _data.floats(edges),
        "counts": [_data.floats(row) for row in counts],
    }
