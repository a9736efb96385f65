"""Expected gradients (GradientSHAP): integrated gradients with sampled baselines and path positions.

Erion, Janizek, Sturmfels, Lundberg, Lee (2021), "Improving performance of deep learning models with
axiomatic attribution priors and expected gradients", Nature Machine Intelligence 3, eq. 4:
``EG_i(x) = E_{x' ~ D, a ~ U(0, 1)} [(x_i - x'_i) dF(x' + a (x - x'))/dx_i]``, estimated with
``samples`` draws per input; this is GradientSHAP of Lundberg & Lee (2017, "A Unified Approach to
Interpreting Model Predictions", NeurIPS) when ``D`` is the background set (Captum's ``GradientShap``
also adds Gaussian noise ``stdev`` to the input of each draw). Completeness holds in expectation:
``E[sum_i EG_i] = F(x) - E[F(x')]``; its estimate's gap is ``meta["completeness_error"]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from netsight.errors import ArgumentError

from ._baselines import make_baseline
from ._common import (
    Target,
    TargetSpec,
    batched,
    check_inputs,
    chunk_size,
    forward_scores,
    input_gradients,
    no_layer,
    prepare_target,
    resolve_chunk,
    resolved,
    score,
    session,
    with_target,
)
from ._explanation import Explanation
from ._forward import forward_args
from ._registry import register


@register(
    "expected_gradients",
    kind="gradient",
    passes="samples x (forward + backward) + forwards of the baselines",
    summary="E over baselines x' and a ~ U(0,1) of (x - x') * dF(x' + a(x - x'))/dx (GradientSHAP)",
    paper="Erion et al. 2021, Expected Gradients (Nat. Mach. Intell.); Lundberg & Lee 2017, SHAP",
)
def expected_gradients(
    model: nn.Module,
    inputs: torch.Tensor,
    target: TargetSpec = None,
    *,
    layer: Any = None,
    baselines: Any = "zero",
    samples: int = 16,
    stdev: float = 0.0,
    generator: torch.Generator | None = None,
    max_batch: int | None = None,
    progress: bool | None = None,
    forward_kwargs: Mapping[str, Any] | None = None,
) -> Explanation:
    """Expected gradients with ``samples`` draws per input.

    Args:
        baselines: a background set ``[M, ...]`` (each draw picks one at random), or one baseline
            spec as in integrated gradients (``"zero"``, ``"blur"``, ``"uniform"``, a number).
        stdev: standard deviation of Gaussian noise added to the input of each draw (Captum's
            ``stdevs``); 0 by default.
        generator: a ``torch.Generator`` on the input's device, for reproducible draws.
    """
    no_layer("expected_gradients", layer)
    x = check_inputs(inputs).detach()
    if not isinstance(samples, int) or samples < 1:
        raise ArgumentError(f"samples: expected a positive int (draws per input), got {samples!r}.")
    b = x.shape[0]
    if isinstance(baselines, torch.Tensor) and baselines.dim() == x.dim():
        pool = baselines.to(device=x.device, dtype=x.dtype)
        if pool.shape[1:] != x.shape[1:]:
            raise ArgumentError(
                f"baselines: samples of shape {tuple(pool.shape[1:])} do not match the inputs' "
                f"{tuple(x.shape[1:])}. Pass a background set [M, {', '.join(map(str, x.shape[1:]))}]."
            )
    else:
        pool = make_baseline(x, baselines, generator=generator)  # one per input
    t = prepare_target(target, b, x.device)
    fwd = forward_args(forward_kwargs, x)
    pick = torch.randint(pool.shape[0], (b * samples,), generator=generator, device=x.device)
    if pool.shape[0] == b and not (isinstance(baselines, torch.Tensor) and baselines.dim() == x.dim()):
        pick = torch.arange(b, device=x.device).repeat_interleave(samples)
    alphas = torch.rand((b * samples,), generator=generator, device=x.device, dtype=x.dtype)
    noise = (
        torch.randn((b * samples, *x.shape[1:]), generator=generator, device=x.device, dtype=x.dtype) * stdev
        if stdev > 0
        else None
    )
    with session(model) as s:
        chunk = chunk_size(model, x, max_batch=max_batch, fwd=fwd)

        def ends(xc: torch.Tensor, tc: Any, kw: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
            with torch.no_grad():
                out = model(xc, **kw)
            tt = resolve_chunk(out, tc)
            classes = tt if isinstance(tt, torch.Tensor) else torch.full((xc.shape[0],), -1, device=xc.device)
            return score(out, tt), classes

        fx, classes = with_target(ends, x, t, chunk=chunk, fwd=fwd)
        tt: Target = classes if isinstance(t, torch.Tensor) else t
        acc = torch.zeros_like(x)
        view = (-1,) + (1,) * (x.dim() - 1)

        def one(idc: torch.Tensor) -> torch.Tensor:
            sample = idc // samples
            base = pool[pick[idc]]
            xi = x[sample] if noise is None else x[sample] + noise[idc]
            pts = base + alphas[idc].view(view) * (xi - base)
            tc = tt[sample] if isinstance(tt, torch.Tensor) else tt
            kw = fwd.rows(sample)
            g, _, _ = input_gradients(model, pts, tc, kw)
            acc.index_add_(0, sample, g * (xi - base))
            return forward_scores(model, base, tc, kw)

        fb = batched(
            one,
            torch.arange(b * samples, device=x.device),
            chunk=chunk,
            progress=progress,
            desc="expected_gradients",
        )
    attr = acc / samples
    efb = fb.reshape(b, samples).mean(dim=1)
    err = (attr.sum(dim=tuple(range(1, x.dim()))) - (fx - efb)).abs()
    return Explanation(
        attributions=attr,
        method="expected_gradients",
        target=resolved(t, classes),
        meta={
            "completeness_error": err,
            "options": {"samples": samples, "stdev": stdev, "max_batch": max_batch},
            "passes": s.calls,
        },
    )
