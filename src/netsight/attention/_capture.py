"""``ns.attention``: capture every attention map of one forward pass, reduced on the fly if asked."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ..capture import Hooks, resolve, unwrap
from ..capture._selectors import Layers
from ..errors import AttentionError, SelectorError, closest
from ._maps import AttentionMaps
from ._reduce import ReduceSpec, Reduction, as_reduction
from ._sources import Source, find_sources, install, prepare
from .rollout import Rollout

__all__ = ["attention", "call_model", "live_attention", "select_sources"]


def call_model(model: nn.Module, inputs: Any) -> Any:
    """Run ``model`` on ``inputs``: a tensor, a dict of keyword tensors (a tokenizer's output) or a tuple."""
    if isinstance(inputs, Mapping):
        return model(**inputs)
    if isinstance(inputs, (tuple, list)):
        return model(*inputs)
    return model(inputs)


def select_sources(model: nn.Module, layers: Layers = None) -> list[Source]:
    """The attention sources of ``model`` that ``layers`` selects (a module path, glob, type, ...).

    Selecting a block selects the attention modules inside it.
    """
    sources = find_sources(model)
    if not sources:
        kinds = sorted({type(m).__name__ for m in model.modules()})
        raise AttentionError(
            f"model: found no attention module netsight can read in {type(model).__name__} (module "
            f"types: {', '.join(kinds[:10])}{' ...' if len(kinds) > 10 else ''}). Supported: "
            "nn.MultiheadAttention (nn.Transformer*, torchvision ViT), Hugging Face BERT/GPT-2-like "
            "attention, timm Attention."
        )
    if layers is None:
        return sources
    chosen = {n for n, _ in resolve(model, layers)}
    picked = [s for s in sources if s.name in chosen or any(s.name.startswith(c + ".") for c in chosen)]
    if not picked:
        names = [s.name for s in sources]
        near = closest(str(layers), names)
        raise SelectorError(
            f"layers: {layers!r} selects no attention module. Attention modules: "
            f"{', '.join(near or names[:6])}{' ...' if len(names) > 6 and not near else ''}."
        )
    return picked


class _Collector:
    """Receives each layer's probabilities (whole or in row chunks) and keeps what was asked."""

    def __init__(
        self,
        red: Reduction,
        *,
        keep: bool,
        acc: Rollout | None,
        to: torch.device | None,
        kinds: Mapping[str, str],
    ) -> None:
        self.red = red
        self.keep = keep
        self.acc = acc
        self.to = to
        self.maps: dict[str, torch.Tensor] = {}
        self.indices: dict[str, torch.Tensor] = {}
        self.shapes: dict[str, tuple[int, int, int, int]] = {}
        self.kinds: dict[str, str] = {}
        self.calls: dict[str, int] = {}
        self.kind_of = dict(kinds)

    def rows_for(self, n_rows: int) -> list[int] | None:
        """The query rows this capture needs: the kept rows, unless the rollout needs every row."""
        idx = self.red.row_index(n_rows)
        if self.acc is not None or idx is None:
            return None
        return [int(i) for i in idx.tolist()]

    def emit(self, name: str, parts: Iterable[tuple[int, torch.Tensor]], n_rows: int) -> None:
        count = self.calls.get(name, 0)
        self.calls[name] = count + 1
        key = name if count == 0 else f"{name}[{count}]"
        kept: list[torch.Tensor] = []
        kept_idx: list[torch.Tensor] = []
        buf: torch.Tensor | None = None
        shape: tuple[int, int, int, int] | None = None
        heads: list[int] | None = None
        for start, probs in parts:
            p = probs.detach()
            b, h, _, k = p.shape
            shape = (b, h, n_rows, k)
            heads = self.red.head_index(h)
            if self.acc is not None:
                if buf is None:
                    buf = p.new_empty((b, n_rows, k), dtype=torch.float32)
                sel = p if heads is None else p[:, heads]
                buf[:, start : start + p.shape[2]] = sel.float().mean(dim=1)
            if self.keep:
                r = self.red.select(p, start, n_rows)
                if self.red.topk is not None:
                    values, idx = r.topk(min(self.red.topk, k), dim=-1)
                    kept.append(values)
                    kept_idx.append(idx)
                else:
                    kept.append(r if r.data_ptr() != probs.data_ptr() else r.clone())
        if shape is None:
            return
        self.shapes[key] = shape
        self.kinds[key] = self.kind_of.get(name, "")
        if buf is not None and self.acc is not None:
            self.acc.add(buf)
        if self.keep:
            m = torch.cat(kept, dim=2) if len(kept) > 1 else kept[0]
            self.maps[key] = m if self.to is None else m.to(self.to)
            if kept_idx:
                i = torch.cat(kept_idx, dim=2) if len(kept_idx) > 1 else kept_idx[0]
                self.indices[key] = i if self.to is None else i.to(self.to)


def attention(
    model: nn.Module,
    inputs: Any,
    layers: Layers = None,
    reduce: ReduceSpec = None,
    *,
    rollout: bool = False,
    residual: float = 0.5,
    keep: bool = True,
    chunk_rows: int | None = None,
    to: torch.device | str | None = None,
    tokens: Sequence[str] | None = None,
) -> AttentionMaps:
    """Capture the attention probabilities of ``model`` on ``inputs`` (one forward pass, no gradients).

    ::

        maps = ns.attention(model, inputs)                    # full maps
        maps.names                                            # attention modules by path
        maps["encoder.layer.3.attention.self"]                # [batch, heads, query, key]
        maps = ns.attention(vit, x, reduce={"rows": [0], "topk": 16})   # long inputs: class row, top-16

    Args:
        model: a model with ``nn.MultiheadAttention`` (``nn.Transformer*``, torchvision ViT), Hugging
            Face BERT-/GPT-2-like attention (switched to eager attention while capturing), or timm
            ``Attention`` (``fused_attn`` switched off while capturing). Left exactly as it was.
        inputs: a tensor, a dict of keyword tensors (a tokenizer's output), or a tuple of arguments.
        layers: which attention modules (path, glob, type, list; a block selects the attention in it);
            ``None`` for all.
        reduce: what to keep of each map, applied on the device as each layer's map is produced:
            ``None`` (everything), ``"mean"`` (head average), ``"cls"`` (query row 0), or a dict
            ``{"heads": [...], "rows": [...], "mean_heads": bool, "topk": k}``. With a reduction (or
            ``rollout=True``) ``nn.MultiheadAttention`` runs untouched and its probabilities are
            recomputed chunk by chunk of query rows, so a full map is never held.
        rollout: also accumulate attention rollout (Abnar & Zuidema 2020) layer by layer, kept as
            ``maps.rollout`` ``[B, T, T]``.
        residual: the identity's weight in the rollout (0.5 in the paper).
        keep: keep the (reduced) maps; ``False`` with ``rollout=True`` keeps only the rollout.
        chunk_rows: query rows per recomputed chunk (default: chunks of about 64 MB).
        to: move the kept maps to this device (e.g. ``"cpu"``).
        tokens: token strings, kept for the pictures.
    """
    root = unwrap(model)
    sources = select_sources(root, layers)
    red = as_reduction(reduce)
    if not keep and not rollout:
        raise AttentionError("keep: False without rollout=True would keep nothing; pass keep=True.")
    mode = "weights" if red.is_full and keep and not rollout else "chunked"
    acc = Rollout(residual) if rollout else None
    col = _Collector(
        red,
        keep=keep,
        acc=acc,
        to=torch.device(to) if to is not None else None,
        kinds={s.name: s.kind for s in sources},
    )
    with Hooks(root) as hooks:
        prepare(hooks, root, sources)
        for s in sources:
            install(hooks, s, col.emit, mode=mode, rows=chunk_rows, rows_for=col.rows_for)
        with torch.no_grad():
            call_model(model, inputs)
    if not col.shapes:
        raise AttentionError(
            f"model: none of the {len(sources)} attention modules ran during the forward pass "
            f"({', '.join(s.name for s in sources[:4])}...). Check that inputs reach them."
        )
    return AttentionMaps(
        maps=col.maps,
        indices=col.indices,
        shapes=col.shapes,
        reduction=red,
        rollout=acc.result if acc is not None else None,
        kinds=col.kinds,
        tokens=tuple(tokens) if tokens is not None else None,
    )


def live_attention(hooks: Hooks, model: nn.Module, sources: list[Source]) -> dict[str, list[torch.Tensor]]:
    """Install graph-attached capture on ``sources`` inside an open ``hooks`` session.

    The returned dict fills during the forward pass with each module's probabilities ``[B, H, Q, K]``
    (one per call), still in the autograd graph, for gradients with respect to them.
    """
    got: dict[str, list[torch.Tensor]] = {}

    def emit(name: str, parts: Iterable[tuple[int, torch.Tensor]], n_rows: int) -> None:
        for _, p in parts:
            got.setdefault(name, []).append(p)

    prepare(hooks, model, sources)
    for s in sources:
        install(hooks, s, emit, mode="live")
    return got
