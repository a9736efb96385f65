"""What the class activation map (CAM) methods share: one pass to a layer, a weighting, a map.

Each CAM file defines only how it weighs the layer's activations ``A`` ``[N, K, h, w]`` with the
gradient ``G = ∂y_c/∂A`` (same shape); :func:`run_cam` does the rest: the default layer, the batched
passes (one forward, and one backward that stops at the layer), ReLU, upsampling to the input's size.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from netsight.capture import resolve, unwrap
from netsight.errors import ArgumentError

from ._common import (
    TargetSpec,
    check_inputs,
    chunk_size,
    default_layer,
    layer_pass,
    prepare_target,
    resolve_chunk,
    resolved,
    score,
    session,
    to_grid,
    upsample,
    with_target,
)
from ._explanation import Explanation
from ._forward import NO_ARGS, ForwardArgs, forward_args
from ._registry import register

Weigh = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (A, G) -> map [N, 1, h, w]


def pick_layer(model: nn.Module, x: torch.Tensor, layer: Any, fwd: ForwardArgs = NO_ARGS) -> str:
    """The path of the one module ``layer`` selects (a path, a glob, a module, a type; a miss names the
    nearest paths, several matches are listed), or the default layer (``fwd``: the forward's keyword
    arguments, for its probe forward)."""
    if layer is None:
        return default_layer(model, x, fwd)
    found = resolve(unwrap(model), layer, argument="layer")
    if len(found) > 1:
        names = [n for n, _ in found]
        shown = ", ".join(names[:8]) + (" ..." if len(names) > 8 else "")
        what = layer.__name__ if isinstance(layer, type) else repr(layer)
        raise ArgumentError(
            f"layer: {what} selects {len(names)} modules ({shown}); a layer method explains one. Pass "
            "the path of one of them."
        )
    return found[0][0]


def run_cam(  # noqa: PLR0917 - internal helper, called positionally by each CAM file
    method: str,
    model: nn.Module,
    inputs: torch.Tensor,
    target: TargetSpec,
    layer: str | None,
    weigh: Weigh,
    *,
    relu: bool = True,
    gradients: bool = True,
    max_batch: int | None = None,
    progress: bool | None = None,
    options: Mapping[str, Any] | None = None,
    forward_kwargs: Mapping[str, Any] | None = None,
) -> Explanation:
    """Run a CAM method: ``map = weigh(A, ∂y_c/∂A)``, ReLU'd (``relu``), upsampled to the input.

    ``gradients=False`` skips the backward pass (Eigen-CAM needs the activations only).
    """
    x = check_inputs(inputs)
    fwd = forward_args(forward_kwargs, x)
    name = pick_layer(model, x, layer, fwd)
    t = prepare_target(target, x.shape[0], x.device)
    hw = (x.shape[-2], x.shape[-1])

    with session(model, freeze=False) as s:  # layer_pass records no graph below the layer
        chunk = chunk_size(model, x, max_batch=max_batch, backward=gradients, fwd=fwd)

        def one(xc: torch.Tensor, tc: Any, kw: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
            lp = layer_pass(s.hooks, model, name, xc, grad=gradients, kw=kw)
            tt = resolve_chunk(lp.output, tc)
            a = to_grid(lp.leaf.detach(), hw)  # [N, K, h, w]
            if gradients:
                sc = score(lp.output, tt)
                (g,) = torch.autograd.grad(sc.sum(), lp.leaf)
                cam = weigh(a, to_grid(g, hw))
            else:
                cam = weigh(a, torch.zeros(0, device=a.device))
            classes = tt if isinstance(tt, torch.Tensor) else torch.full((xc.shape[0],), -1, device=xc.device)
            return cam.detach(), classes

        raw, classes = with_target(one, x, t, chunk=chunk, progress=progress, desc=method, fwd=fwd)
    if relu:
        raw = torch.relu(raw)
    return Explanation(
        attributions=upsample(raw, hw),
        method=method,
        target=resolved(t, classes),
        layer=name,
        meta={
            "raw": raw,
            "options": {"relu": relu, "max_batch": max_batch, **(options or {})},
            "passes": s.calls,
        },
    )


def cam_method(
    name: str, weigh: Weigh, *, title: str, summary: str, paper: str, gradients: bool = True
) -> Callable[..., Explanation]:
    """Build and register a CAM method from its weighting alone (one file per method keeps only that).

    The registered function has the common CAM signature ``(model, inputs, target=None, *, layer=None,
    relu=True, max_batch=None, progress=None, forward_kwargs=None)``; ``gradients=False`` for methods
    that need no backward.
    """

    def method(
        model: nn.Module,
        inputs: torch.Tensor,
        target: TargetSpec = None,
        *,
        layer: Any = None,
        relu: bool = True,
        max_batch: int | None = None,
        progress: bool | None = None,
        forward_kwargs: Mapping[str, Any] | None = None,
    ) -> Explanation:
        return run_cam(
            name,
            model,
            inputs,
            target,
            layer,
            weigh,
            relu=relu,
            gradients=gradients,
            max_batch=max_batch,
            progress=progress,
            forward_kwargs=forward_kwargs,
        )

    method.__name__ = method.__qualname__ = name
    method.__module__ = weigh.__module__
    method.__doc__ = f"{title} at ``layer`` (default: the last spatial layer).\n\nWeighting: {weigh.__doc__}"
    passes = "1 forward + 1 backward to the layer" if gradients else "1 forward"
    return register(name, kind="layer", passes=passes, summary=summary, paper=paper, needs_layer=True)(method)
