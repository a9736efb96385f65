"""Self-contained HTML reports of a stored run: one file, images inline, no network needed to view it.

::

    from netsight.render.report import write_report
    write_report("netsight-runs", "demo-mnist", "report.html")

The page holds, when the run has them: the run's configuration; line charts of its scalars; the
gradient-flow heatmap (layer x step, log colour scale); heatmaps of each activation statistic; the
alerts; the explanation overlays (method x image); the activation maps of the probe images; the
attention pages logged as texts (keys starting with ``attention``). Figures are PNGs inside SVGs, as
``data:`` URIs, so the file works offline and by e-mail. Every string that comes from the run (names,
keys, labels, messages, configuration) is HTML-escaped; attention pages are shown in sandboxed frames.

The page is built from the store's reader API (:class:`netsight.store.RunReader`) only.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from netsight.errors import ArgumentError

from ._colormaps import apply_cmap
from ._images import to_uint8
from ._png import to_png

__all__ = [
    "activation_metrics",
    "build_report",
    "data_uri",
    "gallery_html",
    "gradient_metric",
    "heatmap_svg",
    "line_chart_svg",
    "write_report",
]

F64 = npt.NDArray[np.float64]

#: Gradient metrics the gradient-flow heatmap prefers, most wanted first.
GRADIENT_METRICS = ("grad_norm", "grad/norm", "gradient_norm", "grad_abs_mean", "grad_mean_abs")
#: Statistics of the activations, shown as one heatmap each when the run has them.
ACTIVATION_WORDS = ("act", "activation", "zero", "dead", "saturat")


def esc(value: object) -> str:
    """HTML-escape anything (quotes included), for text and attribute values."""
    return html.escape(str(value), quote=True)


def data_uri(png: bytes) -> str:
    """A PNG as a ``data:`` URI for ``<img src>`` or SVG ``<image href>``."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def gradient_metric(metrics: Sequence[str]) -> str | None:
    """The per-layer metric to draw as gradient flow: a gradient norm when the run has one."""
    for m in GRADIENT_METRICS:
        if m in metrics:
            return m
    grads = [m for m in metrics if "grad" in m.lower() and "weight" not in m.lower()]
    norms = [m for m in grads if "norm" in m.lower()]
    found = norms or grads
    return found[0] if found else None


def activation_metrics(metrics: Sequence[str]) -> list[str]:
    """The per-layer metrics that describe activations (mean, std, fraction of zeros, saturation)."""
    return [
        m
        for m in metrics
        if any(w in m.lower() for w in ACTIVATION_WORDS) and "grad" not in m.lower() and "delta" not in m
    ]


def _fmt(v: float) -> str:
    if not math.isfinite(v):
        return str(v)
    if v != 0 and (abs(v) >= 1e4 or abs(v) < 1e-3):
        return f"{v:.2e}"
    return f"{v:.4g}"


def _colour_png(values: F64, *, cmap: str, cell_h: int, cell_w: int) -> bytes:
    """A [rows, cols] array in [0, 1] (NaN = missing, drawn grey) as a PNG with cells of the given size."""
    t = torch.from_numpy(np.nan_to_num(values, nan=0.0)).float()
    rgb = apply_cmap(t, cmap)  # [rows, cols, 3]
    missing = torch.from_numpy(np.isnan(values))
    rgb[missing] = torch.tensor([0.85, 0.85, 0.85])
    img = to_uint8(rgb)
    img = img.repeat_interleave(cell_h, dim=0).repeat_interleave(cell_w, dim=1)
    return to_png(img.contiguous())


def heatmap_svg(
    values: F64,
    rows: Sequence[str],
    steps: Sequence[int] | npt.NDArray[np.int64],
    *,
    title: str,
    log: bool = False,
    cmap: str = "viridis",
    element_id: str | None = None,
    width: int = 720,
) -> str:
    """A labelled heatmap (rows x steps) as inline SVG: PNG cells, row labels, step ticks, a colour bar.

    ``log``: colour by log10 of the value (non-positive values are drawn as missing).
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 2 or v.shape[0] != len(rows) or v.shape[1] != len(steps):
        raise ArgumentError(
            f"values: expected shape [{len(rows)}, {len(steps)}] (rows x steps), got {tuple(v.shape)}."
        )
    shown = v.copy()
    if log:
        with np.errstate(divide="ignore", invalid="ignore"):
            shown = np.where(shown > 0, np.log10(np.where(shown > 0, shown, 1.0)), np.nan)
    finite = shown[np.isfinite(shown)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    span = hi - lo if hi > lo else 1.0
    scaled = np.where(np.isfinite(shown), (shown - lo) / span, np.nan)
    n_rows, n_cols = v.shape
    cell_h = max(6, min(22, 360 // max(n_rows, 1)))
    label_w = min(260, 12 + 7 * max((len(r) for r in rows), default=4))
    right = 110
    plot_w = max(120, width - label_w - right)
    cell_w = max(1, math.ceil(plot_w / max(n_cols, 1)))  # PNG pixels per step; drawn stretched to plot_w
    plot_h = cell_h * n_rows
    png = _colour_png(scaled, cmap=cmap, cell_h=cell_h, cell_w=cell_w) if n_rows and n_cols else b""
    bar = _colour_png(np.linspace(1, 0, 64)[:, None], cmap=cmap, cell_h=1, cell_w=12)
    total_w = label_w + plot_w + right
    total_h = 28 + plot_h + 40
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="heatmap" role="img" width="{total_w}" '
        f'height="{total_h}" viewBox="0 0 {total_w} {total_h}"'
        + (f' id="{esc(element_id)}"' if element_id else "")
        + f' aria-label="{esc(title)}">',
        f'<text x="{label_w}" y="16" class="t">{esc(title)}</text>',
    ]
    if png:
        out.append(
            f'<image x="{label_w}" y="24" width="{plot_w}" height="{plot_h}" '
            f'preserveAspectRatio="none" style="image-rendering:pixelated" href="{data_uri(png)}"/>'
        )
    for i, name in enumerate(rows):
        y = 24 + i * cell_h + cell_h / 2 + 4
        if cell_h >= 9 or i % max(1, 9 // cell_h) == 0:
            out.append(f'<text x="{label_w - 6}" y="{y:.1f}" text-anchor="end" class="l">{esc(name)}</text>')
    if n_cols:
        step_w = plot_w / n_cols
        ticks = np.linspace(0, n_cols - 1, min(n_cols, 6)).round().astype(int).tolist()
        last_x = None
        for j in reversed(ticks):
            x = label_w + (j + 0.5) * step_w
            if last_x is not None and last_x - x < 40:
                continue
            last_x = x
            y = 24 + plot_h + 16
            out.append(f'<text x="{x:.1f}" y="{y}" text-anchor="middle" class="l">{int(steps[j])}</text>')
    mid = label_w + plot_w / 2
    out.append(f'<text x="{mid:.1f}" y="{24 + plot_h + 34}" text-anchor="middle" class="l">step</text>')
    bx = label_w + plot_w + 12
    out.append(
        f'<image x="{bx}" y="24" width="12" height="{max(plot_h, 40)}" preserveAspectRatio="none" '
        f'href="{data_uri(bar)}"/>'
    )
    top, bottom = (10.0**hi, 10.0**lo) if log else (hi, lo)
    out.append(f'<text x="{bx + 16}" y="34" class="l">{esc(_fmt(top))}</text>')
    out.append(f'<text x="{bx + 16}" y="{24 + max(plot_h, 40)}" class="l">{esc(_fmt(bottom))}</text>')
    if log:
        out.append(f'<text x="{bx + 16}" y="{24 + max(plot_h, 40) / 2 + 4:.1f}" class="l">log scale</text>')
    out.append("</svg>")
    return "".join(out)


def line_chart_svg(
    series: Mapping[str, tuple[npt.NDArray[Any], npt.NDArray[Any]]],
    *,
    title: str,
    width: int = 360,
    height: int = 180,
) -> str:
    """Lines (one per key) of (steps, values) as inline SVG with min/max labels and a legend."""
    colours = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")
    pts = [
        (k, np.asarray(s, dtype=np.float64), np.asarray(v, dtype=np.float64)) for k, (s, v) in series.items()
    ]
    pts = [(k, s[np.isfinite(v)], v[np.isfinite(v)]) for k, s, v in pts]
    pts = [(k, s, v) for k, s, v in pts if s.size]
    left, top, right, bottom = 52, 22, 10, 34
    w, h = width - left - right, height - top - bottom
    out = [
        (
            f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" width="{width}" '
            f'height="{height}" viewBox="0 0 {width} {height}" aria-label="{esc(title)}">'
        ),
        f'<text x="{left}" y="14" class="t">{esc(title)}</text>',
        f'<rect x="{left}" y="{top}" width="{w}" height="{h}" fill="none" stroke="#ccc"/>',
    ]
    if pts:
        s_all = np.concatenate([s for _, s, _ in pts])
        v_all = np.concatenate([v for _, _, v in pts])
        s0, s1 = float(s_all.min()), float(s_all.max())
        v0, v1 = float(v_all.min()), float(v_all.max())
        ss, vs = (s1 - s0) or 1.0, (v1 - v0) or 1.0
        for i, (key, s, v) in enumerate(pts):
            xs = left + (s - s0) / ss * w
            ys = top + h - (v - v0) / vs * h
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys, strict=True))
            c = colours[i % len(colours)]
            if s.size == 1:
                out.append(f'<circle cx="{xs[0]:.1f}" cy="{ys[0]:.1f}" r="3" fill="{c}"/>')
            else:
                out.append(f'<polyline fill="none" stroke="{c}" stroke-width="1.5" points="{path}"/>')
            out.append(
                f'<text x="{left + 6 + 90 * i}" y="{height - 4}" fill="{c}" class="l">{esc(key)}</text>'
            )
        out.append(f'<text x="{left - 4}" y="{top + 8}" text-anchor="end" class="l">{esc(_fmt(v1))}</text>')
        out.append(f'<text x="{left - 4}" y="{top + h}" text-anchor="end" class="l">{esc(_fmt(v0))}</text>')
        out.append(f'<text x="{left}" y="{top + h + 14}" class="l">{int(s0)}</text>')
        out.append(f'<text x="{left + w}" y="{top + h + 14}" text-anchor="end" class="l">{int(s1)}</text>')
    out.append("</svg>")
    return "".join(out)


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1b1b1f;background:#fafafa}
header{background:#20232a;color:#fff;padding:14px 24px}header h1{margin:0;font-size:20px}
header .sub{color:#bbb;font-size:13px}main{padding:8px 24px 40px;max-width:1200px}
section{background:#fff;border:1px solid #e3e3e8;border-radius:6px;margin:16px 0;padding:12px 16px}
h2{font-size:16px;margin:4px 0 10px}table{border-collapse:collapse}td,th{padding:3px 8px;
border-bottom:1px solid #eee;text-align:left;vertical-align:top}th{font-weight:600}
.muted{color:#777}.figs{display:flex;flex-wrap:wrap;gap:12px}.grid img{image-rendering:pixelated}
figure{margin:0}figcaption{font-size:12px;color:#555;max-width:240px}
svg .t{font-size:13px;font-weight:600}svg .l{font-size:11px;fill:#333}
.sev-error{color:#b00020}.sev-warning{color:#9a6700}iframe{width:100%;height:420px;border:1px solid #ddd}
nav a{margin-right:12px;color:#9cf}
"""


def page(title: str, sections: Iterable[tuple[str, str, str]], subtitle: str = "") -> str:
    """A complete HTML page: ``sections`` are ``(id, heading, body_html)``; heading and title are escaped."""
    secs = list(sections)
    nav = "".join(f'<a href="#{esc(i)}">{esc(h)}</a>' for i, h, _ in secs)
    body = "".join(f'<section id="{esc(i)}"><h2>{esc(h)}</h2>{b}</section>' for i, h, b in secs)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>"
        f'<header><h1>{esc(title)}</h1><div class="sub">{esc(subtitle)}</div><nav>{nav}</nav></header>'
        f"<main>{body}</main></body></html>"
    )


def gallery_html(
    title: str,
    columns: Sequence[str],
    rows: Sequence[tuple[str, Sequence[str | None]]],
    *,
    subtitle: str = "",
    inline: Mapping[str, bytes] | None = None,
) -> str:
    """A page with one table of images: ``rows`` are ``(label, [src per column])``.

    A ``src`` is a relative file name (escaped), or a key of ``inline`` whose PNG bytes are embedded.
    ``None`` leaves the cell empty.
    """
    head = "<tr><th></th>" + "".join(f"<th>{esc(c)}</th>" for c in columns) + "</tr>"
    body = []
    for label, srcs in rows:
        cells = []
        for col, src in zip(columns, srcs, strict=True):
            if src is None:
                cells.append("<td></td>")
                continue
            href = data_uri(inline[src]) if inline and src in inline else esc(src)
            cells.append(f'<td><img src="{href}" alt="{esc(label)}: {esc(col)}" width="224"></td>')
        body.append(f"<tr><th>{esc(label)}</th>{''.join(cells)}</tr>")
    table = f'<table class="grid">{head}{"".join(body)}</table>'
    return page(title, [("images", "Images", table)], subtitle)


# -- the run report ---------------------------------------------------------------------------------


def _when(ts: object) -> str:
    if isinstance(ts, (int, float)) and ts > 0:
        return dt.datetime.fromtimestamp(float(ts), tz=dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return str(ts)


def _config_html(config: Mapping[str, Any] | None) -> str:
    if not config:
        return '<p class="muted">No configuration was recorded.</p>'
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in config.items())
    return f"<table>{rows}</table>"


def _scalars_html(reader: Any, max_points: int) -> str:
    keys: list[str] = list(reader.scalar_keys())
    if not keys:
        return '<p class="muted">No scalars were logged.</p>'
    groups: dict[str, list[str]] = {}
    for k in keys:
        base = re.sub(r"^(train|test|val|valid)[_/]", "", k)
        base = re.sub(r"[_/](train|test|val|valid)$", "", base)
        groups.setdefault(base, []).append(k)
    charts = []
    for base, members in groups.items():
        series = {k: reader.series(k, max_points=max_points) for k in members}
        charts.append(line_chart_svg(series, title=base))
    return f'<div class="figs">{"".join(charts)}</div>'


def _matrix_html(
    reader: Any,
    metric: str,
    *,
    log: bool,
    max_steps: int,
    element_id: str | None,
    title: str,
    width: int = 760,
) -> str:
    """A metric's layer x step heatmap, without empty rows and columns; "" when it has no value."""
    names, steps, values = trimmed(*reader.layer_matrix(metric, max_steps=max_steps))
    if len(names) == 0 or len(steps) == 0:
        return ""
    return heatmap_svg(
        values,
        names,
        steps,
        title=title,
        log=log,
        element_id=element_id,
        width=width,
    )


def trimmed(
    names: Sequence[str], steps: npt.ArrayLike, values: npt.ArrayLike
) -> tuple[list[str], npt.NDArray[np.int64], F64]:
    """Drop the layers (rows) and steps (columns) that hold no finite value of a layer x step matrix."""
    v = np.asarray(values, dtype=np.float64).reshape(len(names), -1)
    s = np.asarray(steps, dtype=np.int64)
    ok = np.isfinite(v)
    rows: npt.NDArray[np.bool_] = np.asarray(ok.any(axis=1))
    cols: npt.NDArray[np.bool_] = np.asarray(ok.any(axis=0))
    kept = [n for i, n in enumerate(names) if rows[i]]
    return kept, s[cols], v[rows][:, cols]


def _latest_table(reader: Any, metrics: Sequence[str], max_steps: int) -> str:
    """The last finite value of each metric per layer (metrics are logged on different schedules)."""
    cols: dict[str, dict[str, float]] = {}
    order: list[str] = []
    for m in metrics:
        names, _, values = trimmed(*reader.layer_matrix(m, max_steps=max_steps, agg="last"))
        cols[m] = {}
        for n, row in zip(names, values, strict=True):
            finite = row[np.isfinite(row)]
            cols[m][n] = float(finite[-1])
            if n not in order:
                order.append(n)
    shown = [m for m in metrics if cols[m]]
    if not shown:
        return ""
    head = "<tr><th>layer</th>" + "".join(f"<th>{esc(m)}</th>" for m in shown) + "</tr>"
    rows = "".join(
        f"<tr><td>{esc(n)}</td>"
        + "".join(f"<td>{esc(_fmt(cols[m][n])) if n in cols[m] else ''}</td>" for m in shown)
        + "</tr>"
        for n in order
    )
    return f"<p>Last value per layer:</p><table>{head}{rows}</table>"


def _alerts_html(reader: Any) -> str:
    alerts = list(reader.alerts())
    if not alerts:
        return '<p class="muted">No alerts: no detector fired during this run.</p>'
    rows = "".join(
        f'<tr class="sev-{esc(getattr(a, "severity", "warning"))}">'
        f"<td>{esc(a.step)}</td><td>{esc(a.layer)}</td>"
        f"<td>{esc(a.rule)}</td><td>{esc(_fmt(float(a.value)) if _is_number(a.value) else a.value)}</td>"
        f"<td>{esc(a.message)}</td></tr>"
        for a in alerts
    )
    return (
        "<table><tr><th>step</th><th>layer</th><th>rule</th><th>value</th><th>message</th></tr>"
        f"{rows}</table>"
    )


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float, np.floating, np.integer))


def _img(reader: Any, info: Any, *, alt: str, width: int | None = None) -> str:
    w = f' width="{width}"' if width else ""
    return f'<img src="{data_uri(reader.image(info.id))}" alt="{esc(alt)}"{w} loading="eager">'


def _explanations_html(reader: Any) -> str:
    infos = list(reader.images(kind="explanation"))
    if not infos:
        return '<p class="muted">No explanations were logged.</p>'
    latest: dict[tuple[str, str], Any] = {}
    for info in infos:  # keep the latest step of each (method, image)
        method, _, index = str(info.key).rpartition("/")
        k = (method or str(info.key), index)
        if k not in latest or info.step >= latest[k].step:
            latest[k] = info
    methods = list(dict.fromkeys(m for m, _ in latest))
    indices = sorted({i for _, i in latest}, key=lambda s: (len(s), s))
    inputs = {str(i.key).rpartition("/")[2]: i for i in reader.images(kind="input")}
    head = (
        "<tr><th>image</th>"
        + ("<th>input</th>" if inputs else "")
        + "".join(f"<th>{esc(m)}</th>" for m in methods)
        + "</tr>"
    )
    rows = []
    for idx in indices:
        cells = []
        caption = ""
        if inputs:
            cells.append(f"<td>{_img(reader, inputs[idx], alt=f'input {idx}') if idx in inputs else ''}</td>")
        for m in methods:
            info = latest.get((m, idx))
            if info is None:
                cells.append("<td></td>")
                continue
            meta = info.meta or {}
            if not caption and ("label" in meta or "predicted" in meta):
                caption = f"label {meta.get('label', '?')}, predicted {meta.get('predicted', '?')}"
            cells.append(f"<td>{_img(reader, info, alt=f'{m} of image {idx}')}</td>")
        rows.append(
            f'<tr><th>{esc(idx)}<br><span class="muted">{esc(caption)}</span></th>{"".join(cells)}</tr>'
        )
    return f'<table class="grid">{head}{"".join(rows)}</table>'


def _activation_maps_html(reader: Any, max_steps: int = 5) -> str:
    """Feature grids of the probe images: per probe, a table of layers x steps (the first probe open)."""
    infos = list(reader.images(kind="activation_map"))
    if not infos:
        return '<p class="muted">No activation maps were logged.</p>'
    groups: dict[str, dict[str, list[Any]]] = {}
    for info in infos:  # keys look like "probe0/features.conv1"; other keys form their own group
        group, _, rest = str(info.key).partition("/")
        layer = str(info.layer or rest or info.key)
        groups.setdefault(group if rest else "maps", {}).setdefault(layer, []).append(info)
    parts = []
    for n, (group, layers) in enumerate(groups.items()):
        all_steps = sorted({int(i.step) for items in layers.values() for i in items})
        if len(all_steps) > max_steps:
            pick = np.linspace(0, len(all_steps) - 1, max_steps).round().astype(int)
            all_steps = [all_steps[int(k)] for k in dict.fromkeys(pick.tolist())]
        head = "<tr><th>layer</th>" + "".join(f"<th>step {s}</th>" for s in all_steps) + "</tr>"
        rows = []
        for layer, items in layers.items():
            at = {int(i.step): i for i in items}
            cells = "".join(
                f"<td>{_img(reader, at[s], alt=f'{group} {layer} at step {s}', width=150)}</td>"
                if s in at
                else "<td></td>"
                for s in all_steps
            )
            rows.append(f"<tr><th>{esc(layer)}</th>{cells}</tr>")
        table = f'<table class="grid">{head}{"".join(rows)}</table>'
        parts.append(f"<details{' open' if n == 0 else ''}><summary>{esc(group)}</summary>{table}</details>")
    return (
        "<p>Each tile is one channel of the layer's output for a fixed probe image, captured by hooks "
        "during one forward pass of the whole model (ns.capture), strongest activations brightest.</p>"
        + "".join(parts)
    )


def _other_images_html(reader: Any, shown: set[str]) -> str:
    """Images of kinds no section above shows (the latest 48)."""
    infos = [i for i in reader.images() if str(i.kind) not in shown]
    if not infos:
        return ""
    figs = "".join(
        f"<figure>{_img(reader, i, alt=str(i.key), width=240)}"
        f"<figcaption>{esc(i.kind)}: {esc(i.key)} (step {esc(i.step)})</figcaption></figure>"
        for i in infos[-48:]
    )
    return f'<div class="figs">{figs}</div>'


def _attention_html(reader: Any) -> str:
    keys = [k for k in reader.texts() if str(k).startswith("attention")]
    images = [i for i in reader.images() if str(i.kind).startswith("attention")]
    if not keys and not images:
        return ""
    parts = [
        f'<h3>{esc(k)}</h3><iframe sandbox="allow-scripts" title="{esc(k)}" srcdoc="{esc(reader.text(k))}">'
        "</iframe>"
        for k in keys
    ]
    if images:
        parts.append(
            '<div class="figs">'
            + "".join(
                f"<figure>{_img(reader, i, alt=str(i.key), width=320)}"
                f"<figcaption>{esc(i.key)}</figcaption></figure>"
                for i in images
            )
            + "</div>"
        )
    return "".join(parts)


def _gradient_html(reader: Any, grad: str | None, metrics: Sequence[str], max_steps: int) -> str:
    """The gradient-flow heatmap (parameter gradient norms) and the error signal delta per layer."""
    parts = []
    if grad is not None:
        fig = _matrix_html(
            reader,
            grad,
            log=True,
            max_steps=max_steps,
            element_id="gradient-flow-heatmap",
            title=f"gradient flow: {grad} (layer x step)",
        )
        if fig:
            parts.append(
                "<p>Each row is a layer with parameters (in module order), each column a step; the colour "
                f"is the {esc(grad)} on a log scale. A row fading to dark while its neighbours stay bright "
                "is a vanishing gradient; a bright streak is an explosion.</p>" + fig
            )
    delta = next((m for m in ("delta_norm", "delta", "output_grad_norm") if m in metrics), None)
    if delta is not None:
        fig = _matrix_html(
            reader,
            delta,
            log=True,
            max_steps=max_steps,
            element_id="error-signal-heatmap",
            title=f"error signal: {delta} = |dL/d output| (layer x step)",
        )
        if fig:
            parts.append(
                "<p>The error signal: the norm of the loss gradient with respect to each layer's output, "
                "for every layer. Read a column from the bottom up to see how the error shrinks or grows "
                "as it travels back towards the input.</p>" + fig
            )
    if not parts:
        return '<p class="muted">No gradient statistics were logged (is <code>ns.watch</code> on?).</p>'
    return "".join(parts)


def build_report(reader: Any, *, title: str | None = None, max_steps: int = 400) -> str:
    """The HTML report of one run, as a string. ``reader``: a :class:`netsight.store.RunReader`."""
    info = reader.info
    metrics = list(reader.layer_metrics())
    grad = gradient_metric(metrics)
    acts = activation_metrics(metrics)
    sections: list[tuple[str, str, str]] = []
    overview = (
        f"<table><tr><th>run</th><td>{esc(info.name)}</td></tr>"
        f"<tr><th>status</th><td>{esc(info.status)}</td></tr>"
        f"<tr><th>created</th><td>{esc(_when(info.created))}</td></tr>"
        f"<tr><th>last step</th><td>{esc(info.last_step)}</td></tr>"
        f"<tr><th>layers</th><td>{len(reader.layers())}</td></tr></table>"
        f"<h3>Configuration</h3>{_config_html(info.config)}"
    )
    sections.append(("overview", "Overview", overview))
    sections.append(("scalars", "Scalars", _scalars_html(reader, max_points=max_steps)))
    sections.append(("gradient-flow", "Gradient flow", _gradient_html(reader, grad, metrics, max_steps)))
    figs = "".join(
        _matrix_html(
            reader, m, log=False, max_steps=max_steps, element_id=None, title=f"{m} (layer x step)", width=560
        )
        for m in acts
    )
    if figs:
        body = f'<div class="figs">{figs}</div>' + _latest_table(reader, acts, max_steps)
    else:
        body = '<p class="muted">No activation statistics were logged.</p>'
    sections.append(("activations", "Activation statistics", body))
    sections.append(("alerts", "Alerts", _alerts_html(reader)))
    sections.append(("explanations", "Explanations", _explanations_html(reader)))
    sections.append(("activation-maps", "Activation maps", _activation_maps_html(reader)))
    attention = _attention_html(reader)
    if attention:
        sections.append(("attention", "Attention", attention))
    shown = {"explanation", "activation_map", "input"}
    shown |= {str(i.kind) for i in reader.images() if str(i.kind).startswith("attention")}
    other = _other_images_html(reader, shown)
    if other:
        sections.append(("images", "Other images", other))
    name = title or f"netsight run {info.name}"
    now = _when(dt.datetime.now(tz=dt.timezone.utc).timestamp())
    sub = f"{info.status} · {info.last_step} steps · report written {now}"
    return page(name, sections, sub)


def write_report(store: Any, run: str, out: str | Path, *, title: str | None = None) -> Path:
    """Write the report of ``run`` in ``store`` (a directory or an opened store) to ``out``.

    Returns the path written. Raises :class:`netsight.errors.StoreError` when the store cannot be
    opened and :class:`netsight.errors.RunNotFoundError` (with the nearest names) for an unknown run.
    """
    import importlib

    store_mod = importlib.import_module("netsight.store")
    st = store_mod.open(str(store)) if isinstance(store, (str, Path)) else store
    reader = st.run(run)
    text = build_report(reader, title=title)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
