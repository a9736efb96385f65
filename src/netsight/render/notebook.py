"""Jupyter views: ``run_html(reader)`` is the HTML a stored run shows in a notebook (``_repr_html_``).

A compact card, built from the same pieces as the full report (:mod:`netsight.render.report`): the
run's status, its scalars, the gradient-flow heatmap, the alerts and the latest explanations. Every
string from the run is escaped; images are inline.
"""

from __future__ import annotations

from typing import Any

from .report import (
    _alerts_html,
    _explanations_html,
    _gradient_html,
    _scalars_html,
    esc,
    gradient_metric,
)

__all__ = ["run_html"]


def run_html(reader: Any, *, max_steps: int = 300) -> str:
    """A stored run (:class:`netsight.store.RunReader`) as an HTML fragment for Jupyter."""
    info = reader.info
    metrics = list(reader.layer_metrics())
    alerts = list(reader.alerts())
    head = (
        f"<div><b>netsight run {esc(info.name)}</b> &middot; {esc(info.status)} &middot; "
        f"{esc(info.last_step)} steps &middot; {len(reader.layers())} layers &middot; "
        f"{len(alerts)} alert{'s' if len(alerts) != 1 else ''}</div>"
    )
    parts = [head, _scalars_html(reader, max_points=max_steps)]
    grad = gradient_metric(metrics)
    if grad is not None:
        parts.append(_gradient_html(reader, grad, [], max_steps))
    if alerts:
        parts.append(_alerts_html(reader))
    if reader.images(kind="explanation"):
        parts.append(f"<details><summary>explanations</summary>{_explanations_html(reader)}</details>")
    style = "svg .t{font-size:13px;font-weight:600}svg .l{font-size:11px}.grid img{image-rendering:pixelated}"
    return f'<div class="netsight-run"><style>{style}</style>{"".join(parts)}</div>'
