"""DeepLIFT with the rescale rule: attributions that add up to ``f(x) - f(x')`` in one backward pass.

Shrikumar, Greenside & Kundaje (2017), "Learning Important Features Through Propagating Activation
Differences", ICML, section 3.3 (the rescale rule) and 3.5 (multipliers through linear layers are their
weights, so the chain rule carries them): every element-wise activation module ``f`` (ReLU, Tanh,
Sigmoid, ...) passes back ``m = (f(x) - f(x')) / (x - x')`` instead of its derivative, where ``x'`` is its
input on the baseline; where ``|x - x'| < 1e-10`` the ordinary derivative is used (as in Captum). The
attribution is ``(x - x') * (the gradient so modified)``, and its sum over the input equals
``f(x) - f(x')`` (summation to delta) when every non-linearity is such a module. Other non-linear
operations (max pooling, functional ``F.relu`` inside a ``forward``) keep their gradient:
``meta["completeness_error"]`` says how far that moved the sum.

Each chunk runs its inputs and baselines in one forward of twice the rows (each activation sees both
halves), as the reference implementation does; no ``.grad`` is written into the model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from netsight.capture import Hooks

from ._baselines import make_baseline
from ._common import (
    TargetSpec,
    batched,
    check_inputs,
    chunk_size,
    logits,
    no_layer,
    prepare_target,
    resolve_chunk,
    resolved,
    score,
    session,
)
from ._explanation import Explanation
from ._forward import forward_args
from ._registry import register

#: element-wise activation modules that get the rescale rule
RESCALED = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Sigmoid,
    nn.Tanh,
    nn.Softplus,
    nn.Hardtanh,
    nn.Hardsigmoid,
    nn.Hardswish,
)
_EPS = 1e-10


def _install(hooks: Hooks, model: nn.Module, state: dict[str, bool]) -> int:
    """Put the rescale rule on every element-wise activation module; returns how many."""
    n = 0
    for module in model.modules():
        if not isinstance(module, RESCALED):
            continue
        n += 1
        if getattr(module, "inplace", False):
            hooks.patch(module, "inplace", False)  # the rule needs the input and the output apart

        def rescale(mod: nn.Module, args: Any, out: Any) -> Any:
            x = args[0] if args else None
            if not state["on"] or not isinstance(out, torch.Tensor) or not isinstance(x, torch.Tensor):
                return None
            half = x.shape[0] // 2
            xa, xb, ya, yb = x[:half], x[half:], out[:half], out[half:]
            with torch.no_grad():
                dx = xa - xb
                far = dx.abs() >= _EPS
                m = torch.where(far, (ya - yb) / torch.where(far, dx, torch.ones_like(dx)), 0.0)
            # the value of f(x); the gradient m where the inputs differ, f'(x) where they do not
            swapped = ya.detach() + (xa - xa.detach()) * m
            return torch.cat([torch.where(far, swapped, ya), yb])

        hooks.forward(module, rescale)
    return n


@register(
    "deeplift",
    kind="gradient",
    passes="1 forward + 1 backward of inputs and baselines together (2B rows)",
    summary="(x - x') * gradient with each activation's derivative replaced by its secant (rescale rule)",
    paper="Shrikumar, Greenside, Kundaje 2017, Learning Important Features Through Propagating "
    "Activation Differences (ICML)",
)
def deeplift(
    model: nn.Module,
    inputs: torch.Tensor,
    target: TargetSpec = None,
    *,
    layer: Any = None,
    baseline: Any = "zero",
    max_batch: int | None = None,
    progress: bool | None = None,
    forward_kwargs: Mapping[str, Any] | None = None,
) -> Explanation:
    """DeepLIFT, rescale rule (Shrikumar et al. 2017), against ``baseline`` (as for integrated gradients:
    ``"zero"``, ``"blur"``, ``"uniform"``, a number or a tensor)."""
    no_layer("deeplift", layer)
    x = check_inputs(inputs).detach()
    xb = make_baseline(x, baseline)
    t = prepare_target(target, x.shape[0], x.device)
    fwd = forward_args(forward_kwargs, x)
    state = {"on": False}
    with session(model) as s:
        rescaled = _install(s.hooks, model, state)
        chunk = max(1, chunk_size(model, x, max_batch=max_batch, fwd=fwd) // 2)

        def one(idc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
            n = idc.numel()
            xi = x[idc].requires_grad_(True)
            both = torch.cat([xi, xb[idc]])
            tc = t[idc] if isinstance(t, torch.Tensor) else t
            state["on"] = True
            try:
                with torch.enable_grad():
                    out = model(both, **fwd.rows(torch.cat([idc, idc])))
                    scores = logits(out)  # inputs' rows, then the baselines'
                    fx, fb = scores[:n], scores[n:]
                    tt = resolve_chunk(fx, tc)
                    sx, sb = score(fx, tt), score(fb, tt)
                    (g,) = torch.autograd.grad(sx.sum(), xi)
            finally:
                state["on"] = False
            classes = tt if isinstance(tt, torch.Tensor) else torch.full((n,), -1, device=x.device)
            return g, sx.detach(), sb.detach(), classes

        grads, fx_all, fb_all, classes = batched(
            one, torch.arange(x.shape[0], device=x.device), chunk=chunk, progress=progress, desc="deeplift"
        )
    attr = (x - xb) * grads
    dims = tuple(range(1, x.dim()))
    err = (attr.sum(dim=dims) - (fx_all - fb_all)).abs()
    return Explanation(
        attributions=attr,
        method="deeplift",
        target=resolved(t, classes),
        meta={
            "completeness_error": err,
            "rescaled_modules": rescaled,
            "options": {"baseline": baseline if not isinstance(baseline, torch.Tensor) else "tensor"},
            "passes": s.calls,
        },
    )
