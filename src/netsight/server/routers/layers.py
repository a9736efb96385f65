"""Per-layer statistics: layer x step matrices (gradient flow, activation statistics, δ), one layer's
series, and one step across layers. Layers are filtered by glob and sorted by magnitude here."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import Response

from ...errors import closest
from .. import _data
from ._common import Access, RunName, Step

router = APIRouter(prefix="/api", tags=["layers"])

Metric = Annotated[str, Query(min_length=1, max_length=1000)]
Filter = Annotated[str | None, Query(max_length=1000, description="globs, space or comma separated")]
Sort = Literal["order", "name", "max", "mean", "last", "min"]


def _check_metric(r: Any, run: str, metric: str) -> None:
    metrics = list(r.layer_metrics())
    if metric not in metrics:
        near = closest(metric, metrics)
        hint = f" Did you mean {', '.join(repr(n) for n in near)}?" if near else ""
        raise HTTPException(
            status_code=404, detail=f"metric: run {run!r} has no layer metric {metric!r}.{hint}"
        )


def _check_layer(r: Any, run: str, layer: str) -> None:
    layers = list(r.layers())
    if layer not in layers:
        near = closest(layer, layers)
        hint = f" Did you mean {', '.join(repr(n) for n in near)}?" if near else ""
        raise HTTPException(status_code=404, detail=f"layer: run {run!r} has no layer {layer!r}.{hint}")


@router.get("/layers")
def layers(access: Access, run: RunName, filter: Filter = None) -> dict[str, Any]:  # noqa: A002
    """The run's layer names in module order (filtered by glob) and its layer metrics."""
    r = access.run(run)
    names = list(r.layers())
    return {
        "layers": _data.filter_layers(names, filter),
        "total": len(names),
        "metrics": list(r.layer_metrics()),
    }


@router.get("/layer_matrix", response_model=None)
def layer_matrix(
    *,
    access: Access,
    run: RunName,
    metric: Metric,
    filter: Filter = None,  # noqa: A002
    sort: Sort = "order",
    max_steps: Annotated[int, Query(ge=10, le=10000)] = 2000,
    start: Step = None,
    end: Step = None,
    agg: Literal["max", "mean", "last", "min"] = "max",
    nonempty: bool = False,
    format: Literal["json", "bin"] = "json",  # noqa: A002
) -> dict[str, Any] | Response:
    """``metric`` for every (filtered) layer x step, downsampled to ``max_steps`` columns.

    JSON: ``values_f32`` is base64 of a C-ordered little-endian float32 array of ``shape``
    [layers, steps] (NaN = not logged); ``positive_min``/``min``/``max`` bound the finite values for the
    colour scale. ``nonempty``: leave out layers with no finite value in the range. ``format=bin``: the
    same fields, with the matrix as raw float32 after them (see
    :func:`netsight.server._data.matrix_bytes`), which is what the page asks for.
    """
    r = access.run(run)
    _check_metric(r, run, metric)
    all_names = list(r.layers())
    chosen = _data.filter_layers(all_names, filter)
    if chosen:
        selector = None if len(chosen) == len(all_names) else chosen
        names, steps, raw = r.layer_matrix(
            metric, layers=selector, max_steps=max_steps, start=start, end=end, agg=agg
        )
        names = list(names)
        values = np.asarray(raw, dtype=np.float32).reshape(len(names), len(steps))
        if nonempty and names:  # drop the layers without a value in range (e.g. no parameters, no gradient)
            keep = np.isfinite(values).any(axis=1)
            if not keep.all():
                values = values[keep]
                names = [names[i] for i in np.flatnonzero(keep).tolist()]
        if sort not in ("order", ""):
            order = _data.order_rows(names, values, sort)
            values = values[order]
            names = [names[i] for i in order.tolist()]
    else:
        names, steps, values = [], np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
    lo, hi, pos = _data.value_range(values)
    meta: dict[str, Any] = {
        "metric": metric,
        "names": names,
        "steps": _data.ints(steps),
        "shape": [len(names), len(steps)],
        "positive_min": pos,
        "min": lo,
        "max": hi,
        "total_layers": len(all_names),
    }
    if format == "bin":
        return Response(content=_data.matrix_bytes(meta, values), media_type="application/octet-stream")
    # the base64 text needs no JSON escaping: append it instead of running json.dumps over megabytes
    head = json.dumps(meta, separators=(",", ":"))[:-1].encode()
    body = b"".join((head, b',"values_f32":"', _data.f32_base64(values).encode("ascii"), b'"}'))
    return Response(content=body, media_type="application/json")


@router.get("/layer_series")
def layer_series(
    *,
    access: Access,
    run: RunName,
    metric: Metric,
    layer: Annotated[str, Query(min_length=1, max_length=1000)],
    max_points: Annotated[int, Query(ge=10, le=10000)] = 2000,
) -> dict[str, Any]:
    """One layer's ``metric`` over the steps: ``{layer, metric, steps, values}``."""
    r = access.run(run)
    _check_metric(r, run, metric)
    _check_layer(r, run, layer)
    steps, values = r.layer_series(metric, layer, max_points=max_points)
    return {"layer": layer, "metric": metric, "steps": _data.ints(steps), "values": _data.floats(values)}


@router.get("/step_values")
def step_values(
    *,
    access: Access,
    run: RunName,
    metric: Metric,
    step: Step = None,
    filter: Filter = None,  # noqa: A002
) -> dict[str, Any]:
    """``metric`` of every (filtered) layer at ``step`` (the latest logged at or before it; the latest
    step when omitted, then ``step`` is ``null``)."""
    r = access.run(run)
    _check_metric(r, run, metric)
    names, values = r.step_values(metric, step=step)
    names = list(names)
    values = np.asarray(values, dtype=np.float64)
    keep = set(_data.filter_layers(names, filter))
    idx = [i for i, n in enumerate(names) if n in keep]
    return {
        "metric": metric,
        "step": step,
        "names": [names[i] for i in idx],
        "values": _data.floats(values[idx]) if idx else [],
    }
