"""Integrated gradients at a layer's output: token ids are explained through their embeddings.

Sundararajan, Taly & Yan (2017), "Axiomatic Attribution for Deep Networks", ICML, eq. 1 and 3, applied
to a layer's output ``a`` instead of the input: with ``a`` and ``a'`` the layer's outputs for the input
and for the baseline input, ``attr = (a - a') * sum_j w_j dF/da (a' + alpha_j (a - a'))``, the path
running through the layer's output space (what Captum calls ``LayerIntegratedGradients``). Integer inputs
(token ids) cannot be interpolated, their embeddings can: the default layer is the model's first
``nn.Embedding``. Completeness holds at the layer: ``sum attr = F(x) - F(x')`` up to the quadrature error,
reported per sample in ``meta["completeness_error"]``.

The attributions are summed over the layer's trailing dimensions down to the input's shape (``[B, T, D]``
embeddings give ``[B, T]`` per-token scores); ``meta["layer_attributions"]`` keeps them whole.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from netsight.capture import resolve, unwrap
from netsight.errors import ArgumentError, ExplainError

from ._common import (
    TargetSpec,
    chunk_size,
    layer_outputs,
    output_replacer,
    prepare_target,
    resolved,
    score,
    session,
)
from ._explanation import Explanation
from ._forward import forward_args
from ._registry import register
from .integrated_gradients import nodes, path_integral


def _default_layer(model: nn.Module) -> str:
    for name, m in unwrap(model).named_modules():
        if isinstance(m, nn.Embedding):
            return str(name)
    raise ArgumentError(
        f"layer: {type(model).__name__} has no nn.Embedding to attribute to; pass layer= (the module whose "
        "output the path runs through, e.g. 'embeddings'), or use integrated_gradients on float inputs."
    )


def _baseline_ids(x: torch.Tensor, baseline: Any) -> torch.Tensor:
    if isinstance(baseline, bool) or not isinstance(baseline, (int, float, torch.Tensor)):
        raise ArgumentError(
            f"baseline: expected a token id (int) or a tensor shaped like the inputs {tuple(x.shape)}, got "
            f"{type(baseline).__name__}. Pass e.g. baseline=tokenizer.pad_token_id."
        )
    if isinstance(baseline, torch.Tensor):
        b = baseline.to(x.device)
        if b.shape != x.shape and b.shape != x.shape[1:]:
            raise ArgumentError(
                f"baseline: shape {tuple(b.shape)} does not match the inputs {tuple(x.shape)}; pass one "
                "baseline per input, or one for every sample (the inputs' shape without the batch)."
            )
        return b.expand_as(x).to(x.dtype)
    return torch.full_like(x, baseline)


@register(
    "layer_integrated_gradients",
    kind="gradient",
    passes="steps x (forward + backward) + 2 forwards (end points)",
    summary="(a - a') * path integral of dF/da at a layer's output a (token embeddings); per-token sums",
    paper="Sundararajan, Taly, Yan 2017, Axiomatic Attribution for Deep Networks (ICML), at a layer",
    inputs="tokens",
)
def layer_integrated_gradients(
    model: nn.Module,
    inputs: torch.Tensor,
    target: TargetSpec = None,
    *,
    layer: Any = None,
    baseline: Any = 0,
    steps: int = 50,
    rule: str = "gauss_legendre",
    max_batch: int | None = None,
    progress: bool | None = None,
    forward_kwargs: Mapping[str, Any] | None = None,
) -> Explanation:
    """Integrated gradients through ``layer``'s output (default: the first ``nn.Embedding``).

    Args:
        baseline: the baseline input: a token id for every position (default 0; a padding or ``[MASK]``
            id is the usual choice) or a tensor shaped like the inputs (or one sample of them).
        steps, rule: quadrature nodes per sample and the rule (see ``integrated_gradients``).
    """
    if not isinstance(inputs, torch.Tensor) or inputs.dim() < 1:
        raise ArgumentError(
            f"inputs: expected a batch tensor [B, ...] (token ids [B, T]), got {type(inputs).__name__}."
        )
    x = inputs.detach()
    alphas, weights = nodes(rule, steps)
    ((name, module),) = resolve(
        unwrap(model), _default_layer(model) if layer is None else layer, argument="layer"
    )
    xb = _baseline_ids(x, baseline)
    t = prepare_target(target, x.shape[0], x.device)
    fwd = forward_args(forward_kwargs, x)
    with session(model) as s:
        chunk = chunk_size(model, x, max_batch=max_batch, fwd=fwd)
        a1, classes, fx = layer_outputs(s, model, name, x, t, chunk=chunk, fwd=fwd)
        tt = classes if isinstance(t, torch.Tensor) else t
        a0, _, fb = layer_outputs(s, model, name, xb, tt, chunk=chunk, fwd=fwd)
        if not a1.is_floating_point():
            raise ExplainError(
                f"layer: {name!r} outputs {a1.dtype} values, which cannot be interpolated; pick a layer with "
                "a floating output (the embeddings)."
            )
        box: dict[str, torch.Tensor] = {}

        def at_layer(
            pts: torch.Tensor, sample: torch.Tensor, tc: Any, kw: Mapping[str, Any]
        ) -> tuple[torch.Tensor, torch.Tensor]:
            box["new"] = pts = pts.detach().requires_grad_(True)  # the layer's output for these rows
            with torch.enable_grad():
                f = score(model(x[sample], **kw), tc)
                (g,) = torch.autograd.grad(f.sum(), pts)
            return g, f.detach()

        handle = s.hooks.forward(module, output_replacer(box))
        try:
            full = path_integral(
                model, a1, a0, tt, alphas, weights, chunk=chunk, progress=progress, fwd=fwd,
                gradients=at_layer, desc="layer_integrated_gradients",
            )  # fmt: skip
        finally:
            handle.remove()
            box.clear()
    attributions = full
    while attributions.dim() > x.dim():
        attributions = attributions.sum(dim=-1)
    dims = tuple(range(1, full.dim()))
    err = (full.sum(dim=dims) - (fx - fb)).abs()
    return Explanation(
        attributions=attributions,
        method="layer_integrated_gradients",
        target=resolved(t, classes),
        layer=name,
        meta={
            "layer_attributions": full,
            "completeness_error": err,
            "steps": alphas.numel(),
            "options": {"rule": rule, "steps": steps, "max_batch": max_batch},
            "passes": s.calls,
        },
    )
