"""Attention rollout, attention flow and gradient-weighted attention rollout, on tensors.

- Rollout (Abnar & Zuidema 2020, "Quantifying Attention Flow in Transformers", eq. for rollout): each
  layer's head-averaged attention gets the residual connection, ``Â = 0.5·A + 0.5·I``, its rows are
  renormalised, and the layers are multiplied from the input up: ``R = Â_L · … · Â_1``. Row ``i`` of
  ``R`` says how much each input token reaches output token ``i``. :class:`Rollout` accumulates it one
  layer at a time, so no stack of layer maps is ever held.
- Flow (same paper): the layers form a graph whose node ``(l, i)`` is token ``i`` after layer ``l``, with
  an edge ``(l, i) → (l-1, j)`` of capacity ``Â_l[i, j]``; the relevance of input token ``j`` for output
  token ``i`` is the maximum flow from ``(L, i)`` to ``(0, j)`` (:mod:`netsight.attention._flow`).
- Gradient-weighted attention (Chefer, Gur & Wolf 2021, "Generic Attention-model Explainability for
  Interpreting Bi-Modal and Encoder-Decoder Transformers", eqs. 5-6): ``Ā_l = E_h[(∇A_l ⊙ A_l)⁺]`` and
  ``R ← R + Ā_l · R`` from ``R = I``, layer by layer.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .._progress import progress_bar
from ..errors import ArgumentError

__all__ = ["Rollout", "attention_flow", "grad_rollout", "residual_attention", "rollout"]


def _head_mean(a: torch.Tensor) -> torch.Tensor:
    """``[B, H, T, T]`` -> ``[B, T, T]`` (already head-fused ``[B, T, T]`` maps pass through)."""
    if a.dim() == 4:
        return a.mean(dim=1)
    if a.dim() == 3:
        return a
    raise ArgumentError(f"maps: expected [B, H, T, T] or [B, T, T] attention, got shape {tuple(a.shape)}.")


def _same_tokens(shape: torch.Size, first: torch.Size, layer: int) -> None:
    """Layers are chained token by token: every map must have the first one's batch and length."""
    if shape[0] != first[0] or shape[-1] != first[-1]:
        raise ArgumentError(
            f"maps: layer {layer} has {shape[-1]} tokens (batch {shape[0]}), but the layers before it have "
            f"{first[-1]} (batch {first[0]}); rollout, flow and grad_attention chain the layers of one "
            "token sequence. For an encoder-decoder model select one stack, e.g. layers='encoder.*'."
        )


def residual_attention(a: torch.Tensor, residual: float = 0.5) -> torch.Tensor:
    """``Â = (1 - residual)·A + residual·I``, rows renormalised to sum to 1; ``A`` is ``[B, T, T]``."""
    if not 0.0 <= residual <= 1.0:
        raise ArgumentError(f"residual: expected a weight in [0, 1] (the paper uses 0.5), got {residual}.")
    if a.shape[-1] != a.shape[-2]:
        raise ArgumentError(
            f"maps: rollout needs square self-attention maps [.., T, T], got {tuple(a.shape)} "
            "(cross-attention?). Select self-attention layers with layers=..."
        )
    out = a * (1.0 - residual)  # one new [.., T, T] tensor, then in place: no identity matrix is formed
    out.diagonal(dim1=-2, dim2=-1).add_(residual)
    return out.div_(out.sum(dim=-1, keepdim=True).clamp_min_(torch.finfo(out.dtype).tiny))


class Rollout:
    """Attention rollout accumulated one layer at a time: ``add(A_l)`` in forward order, then ``result``."""

    def __init__(self, residual: float = 0.5) -> None:
        self.residual = residual
        self._r: torch.Tensor | None = None
        self.layers = 0

    def add(self, a: torch.Tensor) -> None:
        """Fold in the next layer's map, ``[B, H, T, T]`` (heads averaged) or ``[B, T, T]``."""
        hat = residual_attention(_head_mean(a).float(), self.residual)
        if self._r is None:
            self._r = hat
        else:
            _same_tokens(hat.shape, self._r.shape, self.layers)
            self._r = torch.bmm(hat, self._r)
            del hat
        self.layers += 1

    @property
    def result(self) -> torch.Tensor:
        """``R = Â_L · … · Â_1``, ``[B, T, T]``."""
        if self._r is None:
            raise ArgumentError("maps: no attention layer was added, so there is nothing to roll out.")
        return self._r


def rollout(maps: Sequence[torch.Tensor], residual: float = 0.5) -> torch.Tensor:
    """Attention rollout ``[B, T, T]`` of ``maps`` (forward order, each ``[B, H, T, T]`` or ``[B, T, T]``)."""
    acc = Rollout(residual)
    for a in maps:
        acc.add(a)
    return acc.result


def grad_rollout(maps: Sequence[torch.Tensor], grads: Sequence[torch.Tensor]) -> torch.Tensor:
    """Chefer et al. (2021) relevance: ``R = I``; ``R ← R + E_h[(∇A ⊙ A)⁺] · R`` per layer. ``[B, T, T]``."""
    if len(maps) != len(grads) or not maps:
        raise ArgumentError(
            f"grads: expected one gradient per attention map, got {len(grads)} for {len(maps)} maps."
        )
    first = maps[0]
    b, t = first.shape[0], first.shape[-1]
    r = torch.eye(t, dtype=torch.float32, device=first.device).expand(b, t, t).clone()
    for i, (a, g) in enumerate(zip(maps, grads)):
        if a.shape != g.shape:
            raise ArgumentError(f"grads: gradient shape {tuple(g.shape)} differs from map {tuple(a.shape)}.")
        if a.shape[-2] != a.shape[-1]:
            raise ArgumentError(
                f"maps: gradient-weighted rollout needs square self-attention maps [.., T, T], got "
                f"{tuple(a.shape)} at layer {i} (cross-attention?). Select self-attention layers with "
                "layers=..."
            )
        _same_tokens(a.shape, first.shape, i)
        cam = _head_mean((g.float() * a.float()).clamp_min(0))
        r = r + torch.bmm(cam, r)
    return r


def attention_flow(
    maps: Sequence[torch.Tensor],
    residual: float = 0.5,
    rows: Sequence[int] | torch.Tensor | None = None,
    *,
    progress: bool | None = None,
) -> torch.Tensor:
    """Attention flow: ``[B, len(rows), T]`` maximum flows from output tokens ``rows`` to every input token.

    ``rows=None`` computes every output token (``T`` rows); a ``[B, k]`` integer tensor gives each sample
    its own ``k`` rows (e.g. the last real token of each sample of a padded batch). The max-flow runs on
    the CPU in float64: the graph has ``(L + 1)·T`` nodes and ``L·T²`` edges, so keep it to short inputs
    (a few dozen tokens).
    ``progress``: a tqdm bar over the max-flow problems (``None``: once they have run for two seconds,
    on a terminal; ``True``: at once; ``False``: never).
    """
    from ._flow import max_flow_layered

    if not maps:
        raise ArgumentError("maps: no attention layer to compute a flow over.")
    for i, a in enumerate(maps):
        _same_tokens(a.shape, maps[0].shape, i)
    hats = [residual_attention(_head_mean(a).double(), residual) for a in maps]
    b, t = hats[0].shape[0], hats[0].shape[-1]
    chosen = _flow_rows(rows, b, t)
    k = len(chosen[0])
    out = torch.zeros(b, k, t, dtype=torch.float64)
    bar = progress_bar(b * k * t, "attention flow", progress, unit="flow")
    try:
        for s in range(b):
            caps = [h[s].cpu() for h in hats]
            for i, row in enumerate(chosen[s]):
                for j in range(t):
                    out[s, i, j] = max_flow_layered(caps, row, j)
                    if bar is not None:
                        bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return out.to(device=maps[0].device, dtype=torch.float32)


def _flow_rows(rows: Sequence[int] | torch.Tensor | None, b: int, t: int) -> list[list[int]]:
    """The output rows of each sample: all ``T``, the same list for all, or a ``[B, k]`` tensor's rows."""
    if rows is None:
        return [list(range(t))] * b
    if isinstance(rows, torch.Tensor) and rows.dim() == 2:
        if rows.shape[0] != b or rows.is_floating_point():
            raise ArgumentError(
                f"rows: expected integer rows [batch={b}, k] or a list of rows, got a {rows.dtype} tensor "
                f"of shape {tuple(rows.shape)}."
            )
        return [[int(r) % t for r in sample] for sample in rows.tolist()]
    return [[int(r) % t for r in rows]] * b
