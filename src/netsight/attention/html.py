"""Self-contained HTML views of attention for text: a token-to-token head view and token highlighting.

Both return a complete HTML document as a string: no CDN, no network request, inline CSS and script
only, so the page works offline, in a notebook (``IPython.display.HTML``), in a file, and as a dashboard
view. Every token string is HTML-escaped where it is written into the page; the attention numbers travel
as JSON in a ``<script type="application/json">`` block with ``<``, ``>`` and ``&`` escaped.

- :func:`head_view`: like BertViz's head view. Tokens in two columns (queries left, keys right), one
  line per (query, key, head) whose opacity is the attention weight, one colour per head; a layer menu,
  head toggles, and hovering a token shows only its lines.
- :func:`token_view`: tokens as text, each shaded by its relevance (one line per sample).
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence

import torch

from ..errors import ArgumentError
from ._maps import AttentionMaps

__all__ = ["head_view", "token_view"]

HEAD_COLOURS = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
    "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#ad494a",
)  # fmt: skip

_MAX_TOKENS = 512


def _json(value: object) -> str:
    return (
        json.dumps(value, separators=(",", ":"))
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
    )


def _page(title: str, style: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"/>'
        '<link rel="icon" href="data:,"/>'
        f"<title>{html.escape(title)}</title><style>{style}</style></head>"
        f"<body>{body}</body></html>\n"
    )


def _layers(attention: AttentionMaps | torch.Tensor, sample: int) -> tuple[list[str], torch.Tensor]:
    """Layer names and ``[L, H, T, T]`` maps of one sample."""
    if isinstance(attention, AttentionMaps):
        if attention.indices:
            raise ArgumentError("attention: the head view needs dense maps; capture without topk.")
        names = attention.names
        stack = torch.stack([attention[n][sample] for n in names])
    elif isinstance(attention, torch.Tensor) and attention.dim() in (3, 4, 5):
        a = attention[None] if attention.dim() == 3 else attention
        stack = a[:, sample] if a.dim() == 5 else a
        names = [f"layer {i}" for i in range(stack.shape[0])]
    else:
        shape = tuple(attention.shape) if isinstance(attention, torch.Tensor) else ""
        raise ArgumentError(
            "attention: expected AttentionMaps or a tensor [L, H, Q, K] (or [H, Q, K], [L, B, H, Q, K]), "
            f"got {type(attention).__name__}{shape}."
        )
    return names, stack


def _tokens(tokens: Sequence[str] | None, attention: AttentionMaps | torch.Tensor, n: int) -> list[str]:
    if tokens is None and isinstance(attention, AttentionMaps) and attention.tokens is not None:
        tokens = attention.tokens
    if tokens is None:
        tokens = [str(i) for i in range(n)]
    toks = [str(t) for t in tokens]
    if len(toks) != n:
        raise ArgumentError(
            f"tokens: got {len(toks)} tokens for maps with {n} positions; pass one per position."
        )
    return toks


_HEAD_STYLE = """
body{font-family:system-ui,sans-serif;margin:12px;color:#222}
.bar{display:flex;gap:12px;align-items:center;flex-wrap:wrap;margin-bottom:8px}
.head{display:inline-block;width:18px;height:18px;border-radius:3px;cursor:pointer;border:2px solid #fff;
 font-size:10px;color:#fff;text-align:center;line-height:18px}
.head.off{opacity:.2}
svg text{font-size:13px;cursor:default;dominant-baseline:middle}
svg text.hl{font-weight:bold}
.note{color:#666;font-size:12px}
"""

_HEAD_SCRIPT = """
(function(){
"use strict";
var data=JSON.parse(document.getElementById("ns-data").textContent);
var svg=document.getElementById("ns-lines");
var sel=document.getElementById("ns-layer");
var heads=document.querySelectorAll(".head");
var on=[];for(var h=0;h<data.colours.length;h++){on.push(true);}
var focus=null;var NS="http://www.w3.org/2000/svg";
function draw(){
  while(svg.firstChild){svg.removeChild(svg.firstChild);}
  var A=data.attn[Number(sel.value)];var n=data.n;
  for(var h=0;h<A.length;h++){
    if(!on[h]){continue;}
    for(var i=0;i<n;i++){
      if(focus!==null&&focus.side==="q"&&focus.i!==i){continue;}
      for(var j=0;j<n;j++){
        if(focus!==null&&focus.side==="k"&&focus.i!==j){continue;}
        var w=A[h][i][j];if(w<0.01){continue;}
        var l=document.createElementNS(NS,"line");
        l.setAttribute("x1",data.x1);l.setAttribute("x2",data.x2);
        l.setAttribute("y1",data.y0+i*data.dy);l.setAttribute("y2",data.y0+j*data.dy);
        l.setAttribute("stroke",data.colours[h]);l.setAttribute("stroke-width","2");
        l.setAttribute("stroke-opacity",String(Math.min(1,w)));svg.appendChild(l);
      }
    }
  }
}
sel.addEventListener("change",draw);
heads.forEach(function(el){el.addEventListener("click",function(){
  var h=Number(el.getAttribute("data-head"));on[h]=!on[h];el.classList.toggle("off",!on[h]);draw();});});
document.querySelectorAll("text[data-i]").forEach(function(el){
  el.addEventListener("mouseenter",function(){
    focus={side:el.getAttribute("data-side"),i:Number(el.getAttribute("data-i"))};el.classList.add("hl");draw();});
  el.addEventListener("mouseleave",function(){focus=null;el.classList.remove("hl");draw();});
});
draw();
document.body.setAttribute("data-ready","1");
})();
"""


def head_view(
    attention: AttentionMaps | torch.Tensor,
    tokens: Sequence[str] | None = None,
    *,
    sample: int = 0,
    layer: int = 0,
    title: str = "netsight · attention head view",
) -> str:
    """A token-to-token attention view (BertViz-style head view) as a self-contained HTML document.

    Args:
        attention: :class:`AttentionMaps` with dense self-attention maps, or a tensor ``[L, H, T, T]``
            (``[H, T, T]`` for one layer, ``[L, B, H, T, T]`` with ``sample``).
        tokens: the ``T`` token strings (default: ``attention.tokens`` or positions); escaped.
        sample: which sample of the batch.
        layer: the layer shown first (a menu switches layers).
        title: the page title.
    Returns:
        the HTML page as a string (write it to a ``.html`` file or display it in a notebook).
    """
    names, stack = _layers(attention, sample)
    n_layers, n_heads, q, k = stack.shape
    if q != k:
        raise ArgumentError(
            f"attention: the head view draws self-attention [.., T, T]; got {q} queries and {k} keys. "
            "Capture without row reductions, or select self-attention layers with layers=..."
        )
    if q > _MAX_TOKENS:
        raise ArgumentError(
            f"attention: {q} tokens are too many lines for a readable head view (limit {_MAX_TOKENS}); "
            "crop the input, or use token_view with rollout relevance."
        )
    if not 0 <= layer < n_layers:
        raise ArgumentError(f"layer: expected 0..{n_layers - 1}, got {layer}.")
    toks = _tokens(tokens, attention, q)
    dy, y0, x1, x2 = 22, 40, 190, 330
    weights = [
        [[[round(float(v), 4) for v in row] for row in hm] for hm in lm]
        for lm in stack.float().cpu().tolist()
    ]
    colours = [HEAD_COLOURS[h % len(HEAD_COLOURS)] for h in range(n_heads)]
    data = {"attn": weights, "n": q, "dy": dy, "y0": y0, "x1": x1, "x2": x2, "colours": colours}
    options = "".join(
        f'<option value="{i}"{" selected" if i == layer else ""}>{html.escape(n)}</option>'
        for i, n in enumerate(names)
    )
    swatches = "".join(
        f'<span class="head" data-head="{h}" style="background:{c}" title="head {h}">{h}</span>'
        for h, c in enumerate(colours)
    )
    texts = "".join(
        f'<text x="{x1 - 8}" y="{y0 + i * dy}" text-anchor="end" data-side="q" data-i="{i}">'
        f"{html.escape(t)}</text>"
        f'<text x="{x2 + 8}" y="{y0 + i * dy}" data-side="k" data-i="{i}">{html.escape(t)}</text>'
        for i, t in enumerate(toks)
    )
    height = y0 + q * dy + 10
    body = (
        f"<h3>{html.escape(title)}</h3>"
        f'<div class="bar"><label>Layer <select id="ns-layer">{options}</select></label>'
        f"<span>Heads {swatches}</span>"
        '<span class="note">hover a token to see only its lines; click a head to toggle it</span></div>'
        f'<svg width="560" height="{height}" xmlns="http://www.w3.org/2000/svg">'
        f'<text x="{x1 - 8}" y="16" text-anchor="end" class="note">queries</text>'
        f'<text x="{x2 + 8}" y="16" class="note">keys</text>'
        f'<g id="ns-lines"></g>{texts}</svg>'
        f'<script type="application/json" id="ns-data">{_json(data)}</script>'
        f"<script>{_HEAD_SCRIPT}</script>"
    )
    return _page(title, _HEAD_STYLE, body)


_ROW_CSS = """
body{font-family:system-ui,sans-serif;margin:12px;color:#222}
.row{margin:6px 0;line-height:2}
.row b{display:inline-block;min-width:5em;color:#555;font-weight:normal}
.tok{padding:2px 3px;margin:0 1px;border-radius:3px;white-space:pre}
"""


def token_view(
    tokens: Sequence[str] | Sequence[Sequence[str]],
    relevance: torch.Tensor,
    *,
    labels: Sequence[str] | None = None,
    colour: tuple[int, int, int] = (220, 40, 40),
    title: str = "netsight · token relevance",
) -> str:
    """Tokens shaded by relevance, one line per sample, as a self-contained HTML document.

    Args:
        tokens: ``T`` token strings (shared by every sample) or one list per sample; escaped.
        relevance: ``[T]`` or ``[B, T]``; each line is scaled by its own maximum absolute value.
            Negative values are drawn in blue.
        labels: an optional label per line.
        colour: the RGB colour of positive relevance.
    """
    rel = relevance.detach().float().cpu()
    if rel.dim() == 1:
        rel = rel[None]
    if rel.dim() != 2:
        raise ArgumentError(f"relevance: expected [T] or [B, T], got shape {tuple(relevance.shape)}.")
    if tokens and not isinstance(tokens[0], str):
        per = [[str(t) for t in row] for row in tokens]
    else:
        per = [[str(t) for t in tokens]] * rel.shape[0]
    if len(per) != rel.shape[0]:
        raise ArgumentError(f"tokens: {len(per)} token lists for {rel.shape[0]} relevance rows.")
    if labels is not None and len(labels) != rel.shape[0]:
        raise ArgumentError(f"labels: {len(labels)} labels for {rel.shape[0]} rows; pass one per row.")
    lines = []
    for b, toks in enumerate(per):
        if len(toks) != rel.shape[1]:
            raise ArgumentError(f"tokens: {len(toks)} tokens for {rel.shape[1]} relevance values in row {b}.")
        scale = float(rel[b].abs().max()) or 1.0
        spans = []
        for t, v in zip(toks, rel[b].tolist()):
            a = min(1.0, abs(v) / scale)
            r, g, bl = colour if v >= 0 else (40, 90, 220)
            spans.append(
                f'<span class="tok" style="background:rgba({r},{g},{bl},{a:.3f})" '
                f'title="{html.escape(f"{v:.4g}")}">{html.escape(t)}</span>'
            )
        label = f"<b>{html.escape(labels[b])}</b>" if labels is not None else ""
        lines.append(f'<div class="row">{label}{"".join(spans)}</div>')
    return _page(title, _ROW_CSS, f"<h3>{html.escape(title)}</h3>{''.join(lines)}")
