"""Where attention weights come from: ``nn.MultiheadAttention``, Hugging Face and timm attention modules.

Each source is found by module type (no model-specific code) and made to hand its post-softmax
probabilities ``[batch, heads, query, key]`` to an ``emit`` callback, through hooks and reversible
patches owned by :class:`netsight.capture.Hooks`:

- ``nn.MultiheadAttention`` (also inside ``nn.TransformerEncoder``/``Decoder`` and torchvision's ViT):
  in ``"weights"`` mode a forward pre-hook sets ``need_weights=True, average_attn_weights=False`` and a
  forward hook hands the per-head weights over, then gives the caller the output it asked for (``None``
  or the head average). Any hook on the layer turns off ``TransformerEncoderLayer``'s fused fast path,
  and ``TransformerEncoder.use_nested_tensor`` is patched off. In ``"chunked"`` mode the module runs
  untouched (its fused kernel included) and the probabilities are recomputed from its inputs and
  weights, a chunk of query rows at a time, so a 4,096-token map never exists whole.
- Hugging Face BERT-like / GPT-2-like models: every ``config._attn_implementation`` is patched to
  ``"eager"`` while capturing (SDPA and flash attention never form the weights), and the weights are
  read from the attention module's output (the modules named by the model's ``_can_record_outputs``,
  the same ones ``output_attentions`` records).
- timm ``Attention`` (anything with ``fused_attn`` and an ``attn_drop`` module): ``fused_attn`` is
  patched to ``False`` and the probabilities are read from ``attn_drop``'s input by a pre-hook.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..capture import Hooks
from ..errors import AttentionError

__all__ = ["Emit", "Source", "find_sources", "install", "prepare"]

#: ``emit(name, parts, n_rows)``: ``parts`` yields ``(first_row, probs [B, H, q, K])`` chunks.
Emit = Callable[[str, Iterable[tuple[int, torch.Tensor]], int], None]
#: ``rows_for(n_rows)``: the sorted query rows a capture needs (``None``: all of them).
RowsFor = Callable[[int], "list[int] | None"]


@dataclass(frozen=True)
class Source:
    """One attention module of a model: its path, the module, and how to read it."""

    name: str
    module: nn.Module
    kind: str  # "mha" | "hf" | "timm"
    index: int = 1  # hf: position of the weights in the module's output tuple


# -- finding ----------------------------------------------------------------------------------------
def _hf_targets(model: nn.Module) -> list[tuple[type | None, int, str | None, str | None]]:
    """The (class, output index, layer name, class-name suffix) of attention modules a HF model records."""
    out: list[tuple[type | None, int, str | None, str | None]] = []
    for m in model.modules():
        spec = getattr(type(m), "_can_record_outputs", None)
        if not isinstance(spec, dict):
            continue
        for key in ("attentions", "cross_attentions"):
            entries = spec.get(key)
            if entries is None:
                continue
            if not isinstance(entries, (list, tuple)):
                entries = [entries]
            for e in entries:
                if isinstance(e, type):
                    out.append((e, 1, None, None))
                elif isinstance(e, str):
                    out.append((None, 1, None, e))
                else:
                    cls = getattr(e, "target_class", None)
                    suffix = getattr(e, "class_name", None)
                    if not isinstance(cls, type) and not isinstance(suffix, str):
                        continue
                    idx = getattr(e, "index", 1)
                    out.append(
                        (
                            cls if isinstance(cls, type) else None,
                            1 if idx is None else int(idx),
                            getattr(e, "layer_name", None),
                            suffix if isinstance(suffix, str) else None,
                        )
                    )
    return out


def _hf_match(m: nn.Module, name: str, cls: type | None, layer_name: str | None, suffix: str | None) -> bool:
    """Hugging Face's own rule (``transformers.utils.output_capturing``): the class (or a name suffix)
    matches, and ``layer_name``, when given, is a dotted segment of the module's path."""
    if not ((cls is not None and isinstance(m, cls)) or (suffix is not None and name.endswith(suffix))):
        return False
    return layer_name is None or f".{layer_name.strip('.')}." in f".{name}."


def _is_timm_attention(m: nn.Module) -> bool:
    return (
        hasattr(m, "fused_attn")
        and isinstance(getattr(m, "attn_drop", None), nn.Module)
        and hasattr(m, "num_heads")
    )


def find_sources(model: nn.Module) -> list[Source]:
    """Every attention module of ``model`` that netsight can read, in ``named_modules()`` order."""
    hf = _hf_targets(model)
    found: list[Source] = []
    for name, m in model.named_modules():
        if isinstance(m, nn.MultiheadAttention):
            found.append(Source(name, m, "mha"))
            continue
        idx = next((i for cls, i, layer, suffix in hf if _hf_match(m, name, cls, layer, suffix)), None)
        if idx is not None:
            found.append(Source(name, m, "hf", idx))
        elif _is_timm_attention(m):
            found.append(Source(name, m, "timm"))
    return found


# -- model-wide patches -------------------------------------------------------------------------------
def prepare(hooks: Hooks, model: nn.Module, sources: list[Source]) -> None:
    """Patches that make the chosen sources form their weights: eager HF attention, no nested tensors.

    Every config on the path from the root to a chosen HF module, and inside it, is switched: models
    such as T5 hand each stack a deep copy of the config, so the root's alone is not enough.
    """
    hf = [s.name for s in sources if s.kind == "hf"]
    configs: dict[int, Any] = {}
    for name, m in model.named_modules() if hf else ():
        on_path = any(
            not name or n == name or n.startswith(name + ".") or name.startswith(n + ".") for n in hf
        )
        cfg = getattr(m, "config", None)
        if on_path and cfg is not None and hasattr(cfg, "_attn_implementation"):
            configs[id(cfg)] = cfg
    for cfg in configs.values():
        for sub in [cfg, *[getattr(cfg, k, None) for k in getattr(cfg, "sub_configs", {}) or {}]]:
            if sub is None:
                continue
            # The public name is a property whose setter recurses; the stored field is patched directly
            # so that Hooks restores it exactly.
            attr = (
                "_attn_implementation_internal"
                if "_attn_implementation_internal" in vars(sub)
                else ("_attn_implementation")
            )
            if getattr(sub, attr, None) != "eager":
                hooks.patch(sub, attr, "eager")
    for m in model.modules():
        if isinstance(m, nn.TransformerEncoder) and getattr(m, "use_nested_tensor", False):
            hooks.patch(m, "use_nested_tensor", False)


# -- nn.MultiheadAttention ------------------------------------------------------------------------------
_MHA_PARAMS = (
    "query",
    "key",
    "value",
    "key_padding_mask",
    "need_weights",
    "attn_mask",
    "average_attn_weights",
    "is_causal",
)
_MHA_DEFAULTS: dict[str, Any] = {
    "key_padding_mask": None,
    "need_weights": True,
    "attn_mask": None,
    "average_attn_weights": True,
    "is_causal": False,
}


def _bind(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    bound = dict(_MHA_DEFAULTS)
    bound.update(zip(_MHA_PARAMS, args))
    bound.update(kwargs)
    return bound


def _additive(mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    if mask is None:
        return None
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(mask, float("-inf"))
    return mask.to(dtype)


@dataclass
class _Projected:
    q: torch.Tensor  # [B, H, L, D], already scaled by 1/sqrt(D)
    k: torch.Tensor  # [B, H, S, D]
    v: torch.Tensor  # [B, H, S, D]
    mask: torch.Tensor | None  # additive, broadcastable to [B, H, L, S]
    unbatched: bool


def _project(m: nn.MultiheadAttention, b: dict[str, Any]) -> _Projected:
    """Queries, keys, values and the merged mask exactly as ``F.multi_head_attention_forward`` forms them."""
    query, key, value = b["query"], b["key"], b["value"]
    unbatched = query.dim() == 2
    if unbatched:
        query, key, value = query[None], key[None], value[None]
    elif not m.batch_first:
        query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
    bsz, tgt, emb = query.shape
    h = m.num_heads
    d = emb // h
    if m._qkv_same_embed_dim:
        wq, wk, wv = m.in_proj_weight.chunk(3)
    else:
        wq, wk, wv = m.q_proj_weight, m.k_proj_weight, m.v_proj_weight
    bq = bk = bv = None
    if m.in_proj_bias is not None:
        bq, bk, bv = m.in_proj_bias.chunk(3)
    q = F.linear(query, wq, bq)
    k = F.linear(key, wk, bk)
    v = F.linear(value, wv, bv)
    attn_mask = _additive(b["attn_mask"], q.dtype)
    kpm = b["key_padding_mask"]
    if kpm is not None and unbatched:
        kpm = kpm[None]
    kpm = _additive(kpm, q.dtype)
    if attn_mask is not None:
        attn_mask = attn_mask[None, None] if attn_mask.dim() == 2 else attn_mask.view(bsz, h, tgt, -1)
    if kpm is not None:
        kpm = kpm[:, None, None, :]
    if m.bias_k is not None and m.bias_v is not None:
        k = torch.cat([k, m.bias_k.expand(bsz, 1, emb)], dim=1)
        v = torch.cat([v, m.bias_v.expand(bsz, 1, emb)], dim=1)
        attn_mask = F.pad(attn_mask, (0, 1)) if attn_mask is not None else None
        kpm = F.pad(kpm, (0, 1)) if kpm is not None else None
    q = q.view(bsz, tgt, h, d).transpose(1, 2)
    k = k.view(bsz, k.shape[1], h, d).transpose(1, 2)
    v = v.view(bsz, v.shape[1], h, d).transpose(1, 2)
    if m.add_zero_attn:
        k = torch.cat([k, k.new_zeros(bsz, h, 1, d)], dim=2)
        v = torch.cat([v, v.new_zeros(bsz, h, 1, d)], dim=2)
        attn_mask = F.pad(attn_mask, (0, 1)) if attn_mask is not None else None
        kpm = F.pad(kpm, (0, 1)) if kpm is not None else None
    mask = attn_mask if kpm is None else (kpm if attn_mask is None else attn_mask + kpm)
    return _Projected(q * math.sqrt(1.0 / d), k, v, mask, unbatched)


def _runs(wanted: list[int] | None, n: int, rows: int) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` chunks of at most ``rows`` rows covering ``wanted`` (sorted) or all ``n`` rows."""
    if wanted is None:
        for start in range(0, n, rows):
            yield start, min(n, start + rows)
        return
    i = 0
    while i < len(wanted):
        j = i
        while j + 1 < len(wanted) and wanted[j + 1] == wanted[j] + 1 and wanted[j + 1] - wanted[i] < rows:
            j += 1
        yield wanted[i], wanted[j] + 1
        i = j + 1


def _chunks(p: _Projected, rows: int, wanted: list[int] | None = None) -> Iterator[tuple[int, torch.Tensor]]:
    """Probabilities ``[B, H, r, S]`` for runs of query rows (only the ``wanted`` ones when given)."""
    kt = p.k.transpose(-2, -1)
    for start, stop in _runs(wanted, p.q.shape[2], rows):
        scores = p.q[:, :, start:stop] @ kt
        if p.mask is not None:
            scores = scores + (p.mask if p.mask.shape[2] == 1 else p.mask[:, :, start:stop])
        yield start, scores.softmax(dim=-1)


def default_rows(batch: int, heads: int, keys: int, budget: int = 64 * 2**20) -> int:
    """Query rows per chunk so that one chunk of probabilities stays near ``budget`` bytes."""
    return max(1, budget // max(1, batch * heads * keys * 4))


def _install_mha(
    hooks: Hooks, s: Source, emit: Emit, *, mode: str, rows: int | None, rows_for: RowsFor | None
) -> None:
    m = s.module
    assert isinstance(m, nn.MultiheadAttention)
    if mode == "weights":
        asked: list[tuple[bool, bool]] = []

        def pre(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            b = _bind(args, kwargs)
            asked.append((bool(b["need_weights"]), bool(b["average_attn_weights"])))
            rest = {k: v for k, v in b.items() if k not in ("query", "key", "value")}
            rest.update(need_weights=True, average_attn_weights=False)
            return (b["query"], b["key"], b["value"]), rest

        def post(module: nn.Module, args: Any, kwargs: Any, output: Any) -> Any:
            need, average = asked.pop()
            out, w = output
            if w is None:
                raise AttentionError(
                    f"{s.name}: nn.MultiheadAttention returned no weights although need_weights=True was "
                    "set; capture it with reduce=... (recomputes them from the inputs) instead."
                )
            w4 = w if w.dim() == 4 else w[None]
            emit(s.name, [(0, w4)], w4.shape[2])
            if not need:
                return out, None
            return out, (w.mean(dim=-3) if average else w)

        hooks.forward_pre(m, pre, with_kwargs=True)
        hooks.forward(m, post, with_kwargs=True)
        return

    def recompute(module: nn.Module, args: Any, kwargs: Any, output: Any) -> Any:
        b = _bind(args, kwargs)
        p = _project(m, b)
        n_rows = p.q.shape[2]
        if mode == "chunked":
            r = rows or default_rows(p.q.shape[0], p.q.shape[1], p.k.shape[2])
            wanted = rows_for(n_rows) if rows_for is not None else None
            with torch.no_grad():
                emit(s.name, _chunks(p, r, wanted), n_rows)
            return None
        # "live": probabilities in the autograd graph; the output keeps its value but its gradient
        # flows through them, so d(score)/d(probs) is exact.
        probs = next(_chunks(p, n_rows))[1]
        emit(s.name, [(0, probs)], n_rows)
        o = (probs @ p.v).transpose(1, 2).reshape(p.q.shape[0], n_rows, -1)
        o = F.linear(o, m.out_proj.weight, m.out_proj.bias)
        if p.unbatched:
            o = o[0]
        elif not m.batch_first:
            o = o.transpose(0, 1)
        out, w = output
        return o + (out - o).detach(), w

    hooks.forward(m, recompute, with_kwargs=True)


# -- Hugging Face and timm ------------------------------------------------------------------------------
def _install_hf(hooks: Hooks, s: Source, emit: Emit) -> None:
    def post(module: nn.Module, args: Any, output: Any) -> None:
        w = output[s.index] if isinstance(output, (tuple, list)) and len(output) > s.index else None
        if not isinstance(w, torch.Tensor) or w.dim() != 4:
            impl = getattr(getattr(module, "config", None), "_attn_implementation", "?")
            raise AttentionError(
                f"{s.name}: {type(module).__name__} returned no attention weights (attention "
                f"implementation {impl!r}). Load the model with attn_implementation='eager'."
            )
        emit(s.name, [(0, w)], w.shape[2])

    hooks.forward(s.module, post)


def _install_timm(hooks: Hooks, s: Source, emit: Emit) -> None:
    if getattr(s.module, "fused_attn", False):
        hooks.patch(s.module, "fused_attn", False)

    def pre(module: nn.Module, args: tuple[Any, ...]) -> None:
        w = args[0]
        emit(s.name, [(0, w)], w.shape[2])

    drop = s.module.attn_drop
    assert isinstance(drop, nn.Module)
    hooks.forward_pre(drop, pre)


def install(
    hooks: Hooks,
    s: Source,
    emit: Emit,
    *,
    mode: str = "weights",
    rows: int | None = None,
    rows_for: RowsFor | None = None,
) -> None:
    """Make source ``s`` hand its probabilities to ``emit``.

    ``mode``: ``"weights"`` (the module forms them; full maps), ``"chunked"`` (recomputed in chunks of
    ``rows`` query rows where the module type allows it, for reductions at long lengths; only the rows
    ``rows_for(n_rows)`` names when it is given) or ``"live"``
    (graph-attached probabilities whose gradient is exact, for gradient-weighted attention).
    """
    if s.kind == "mha":
        _install_mha(hooks, s, emit, mode=mode, rows=rows, rows_for=rows_for)
    elif s.kind == "hf":
        _install_hf(hooks, s, emit)
    else:
        _install_timm(hooks, s, emit)
