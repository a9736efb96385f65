"""Integrated gradients, with five quadrature rules and an adaptive, per-sample step count.

Sundararajan, Taly, Yan (2017), "Axiomatic Attribution for Deep Networks", ICML, eq. 1 and 3:
``IG_i(x) = (x_i - x'_i) * int_0^1 dF(x' + a (x - x'))/dx_i da``, approximated by a quadrature
``sum_j w_j g(a_j)``. Completeness (their proposition 1): ``sum_i IG_i(x) = F(x) - F(x')``; the gap
``|sum_i IG_i - (F(x) - F(x'))|`` per sample is reported as ``meta["completeness_error"]``.

Rules (nodes ``a_j`` and weights ``w_j`` on [0, 1]): ``riemann_left`` ``j/n``, ``riemann_right``
``(j+1)/n``, ``riemann_middle`` ``(j+1/2)/n`` (weights ``1/n``), ``riemann_trapezoid`` (``n`` equally
spaced nodes with the end points, trapezoid weights), and ``gauss_legendre`` (the ``n``-point
Gauss-Legendre rule mapped to [0, 1]; the default).

Adaptive mode (``tolerance=``): every sample starts with ``steps`` nodes (default 6); a sample whose
completeness error is above ``tolerance`` gets more nodes, up to ``max_steps``; samples that are
already accurate cost nothing more. With ``riemann_middle`` (the adaptive default) the rules are nested:
refining ``n`` to ``3n`` midpoints reuses the ``n`` gradients already summed and evaluates only the
``2n`` new ones. With another rule the sample is recomputed with at least twice as many nodes (more when
its error is far above the tolerance, assuming the error falls as ``1/n^2``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
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
from ._registry import register

RULES = ("riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "gauss_legendre")
_ALIASES = {"trapezoid": "riemann_trapezoid", "gausslegendre": "gauss_legendre", "gl": "gauss_legendre"}


def nodes(rule: str, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Quadrature nodes and weights on [0, 1] (float64, CPU; tiny and computed once per call)."""
    rule = _ALIASES.get(rule, rule)
    if not isinstance(n, int) or n < 1 or (rule == "riemann_trapezoid" and n < 2):
        raise ArgumentError(
            f"steps: expected an int >= {2 if rule == 'riemann_trapezoid' else 1}, got {n!r}."
        )
    j = torch.arange(n, dtype=torch.float64)
    if rule == "riemann_left":
        return j / n, torch.full((n,), 1.0 / n, dtype=torch.float64)
    if rule == "riemann_right":
        return (j + 1) / n, torch.full((n,), 1.0 / n, dtype=torch.float64)
    if rule == "riemann_middle":
        return (j + 0.5) / n, torch.full((n,), 1.0 / n, dtype=torch.float64)
    if rule == "riemann_trapezoid":
        w = torch.full((n,), 1.0 / (n - 1), dtype=torch.float64)
        w[0] = w[-1] = 0.5 / (n - 1)
        return j / (n - 1), w
    if rule == "gauss_legendre":
        xg, wg = np.polynomial.legendre.leggauss(n)
        return torch.from_numpy(0.5 * (xg + 1.0)), torch.from_numpy(0.5 * wg)
    raise ArgumentError(f"method: unknown rule {rule!r}; use one of {', '.join(RULES)}.")


def path_integral(  # noqa: PLR0917 - internal, called once with all of them
    model: nn.Module,
    x: torch.Tensor,
    xb: torch.Tensor,
    classes: Target,
    alphas: torch.Tensor,
    weights: torch.Tensor,
    *,
    chunk: int,
    progress: bool,
) -> torch.Tensor:
    """``(x - x') * sum_j w_j dF(x' + a_j (x - x'))/dx`` for every sample, chunked over ``B * n`` points.

    Points are made per chunk (never all at once); gradients are summed into one accumulator.
    """
    b, n = x.shape[0], alphas.numel()
    a = alphas.to(device=x.device, dtype=x.dtype)
    w = weights.to(device=x.device, dtype=x.dtype)
    diff = x - xb
    acc = torch.zeros_like(x)
    view = (-1,) + (1,) * (x.dim() - 1)

    def one(idc: torch.Tensor) -> torch.Tensor:
        sample, step = idc // n, idc % n
        pts = xb[sample] + a[step].view(view) * diff[sample]
        tc = classes[sample] if isinstance(classes, torch.Tensor) else classes
        g, s, _ = input_gradients(model, pts, tc)
        acc.index_add_(0, sample, g * w[step].view(view))
        return s

    batched(
        one, torch.arange(b * n, device=x.device), chunk=chunk, progress=progress, desc="integrated_gradients"
    )
    return diff * acc


@register(
    "integrated_gradients",
    kind="gradient",
    passes="steps x (forward + backward) + 2 forwards (end points)",
    summary="(x - x') * path integral of the gradient; completeness error reported",
    paper="Sundararajan, Taly, Yan 2017, Axiomatic Attribution for Deep Networks (ICML)",
)
def integrated_gradients(
    model: nn.Module,
    inputs: torch.Tensor,
    target: TargetSpec = None,
    *,
    layer: Any = None,
    baseline: Any = "zero",
    steps: int | None = None,
    rule: str | None = None,
    tolerance: float | None = None,
    max_steps: int = 256,
    blur_sigma: float = 5.0,
    generator: torch.Generator | None = None,
    max_batch: int | None = None,
    progress: bool = False,
) -> Explanation:
    """Integrated gradients (Sundararajan et al. 2017).

    Args:
        baseline: ``"zero"``, ``"blur"``, ``"uniform"``, a number or a tensor (see ``_baselines``).
        steps: quadrature nodes per sample (default 50; 6 as the start of the adaptive mode).
        rule: one of ``riemann_left``, ``riemann_right``, ``riemann_middle``, ``riemann_trapezoid``,
            ``gauss_legendre``; default ``gauss_legendre``, or ``riemann_middle`` (nested) with
            ``tolerance``.
        tolerance: adaptive mode: refine each sample until its completeness error is at most this
            (in units of the score), or until ``max_steps``.
    """
    no_layer("integrated_gradients", layer)
    x = check_inputs(inputs).detach()
    if rule is None:
        rule = "riemann_middle" if tolerance is not None else "gauss_legendre"
    rule = _ALIASES.get(rule, rule)
    if rule not in RULES:
        raise ArgumentError(f"rule: unknown rule {rule!r}; use one of {', '.join(RULES)}.")
    if tolerance is not None and (not isinstance(tolerance, (int, float)) or tolerance <= 0):
        raise ArgumentError(f"tolerance: expected a positive number (score units), got {tolerance!r}.")
    n0 = steps if steps is not None else (6 if tolerance is not None else 50)
    nodes(rule, n0)  # validates steps
    t = prepare_target(target, x.shape[0], x.device)
    xb = make_baseline(x, baseline, blur_sigma=blur_sigma, generator=generator)
    with session(model) as s:
        chunk = chunk_size(model, x, max_batch=max_batch)
        fwd_chunk = chunk_size(model, x, max_batch=max_batch, backward=False)

        def ends(xc: torch.Tensor, tc: Any) -> tuple[torch.Tensor, torch.Tensor]:
            with torch.no_grad():
                out = model(xc)
            tt = resolve_chunk(out, tc)
            classes = tt if isinstance(tt, torch.Tensor) else torch.full((xc.shape[0],), -1, device=xc.device)
            return score(out, tt), classes

        fx, classes = with_target(ends, x, t, chunk=fwd_chunk)
        tt: Target = classes if isinstance(t, torch.Tensor) else t
        fb = with_target(lambda xc, tc: forward_scores(model, xc, tc), xb, tt, chunk=fwd_chunk)
        delta = fx - fb
        dims = tuple(range(1, x.dim()))

        n = n0
        attr = torch.empty_like(x)
        err = torch.empty_like(fx)
        used = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        todo = torch.arange(x.shape[0], device=x.device)
        nested = tolerance is not None and rule == "riemann_middle"
        gsum = torch.zeros_like(x) if nested else None  # nested mode: unweighted sums of (x-x')*g
        done_nodes = 0
        while True:
            tsub: Target = tt[todo] if isinstance(tt, torch.Tensor) else tt
            if gsum is not None:  # midpoints of n intervals contain those of n/3: add the new ones only
                alphas = (torch.arange(n, dtype=torch.float64) + 0.5) / n
                if done_nodes:
                    alphas = alphas[torch.arange(n) % 3 != 1]
                part = path_integral(
                    model,
                    x[todo],
                    xb[todo],
                    tsub,
                    alphas,
                    torch.ones_like(alphas),
                    chunk=chunk,
                    progress=progress,
                )
                gsum[todo] += part
                a = gsum[todo] / n
            else:
                alphas, weights = nodes(rule, n)
                a = path_integral(
                    model, x[todo], xb[todo], tsub, alphas, weights, chunk=chunk, progress=progress
                )
            e = (a.sum(dim=dims) - delta[todo]).abs()
            attr[todo] = a
            err[todo] = e
            used[todo] = n
            done_nodes = n
            if tolerance is None:
                break
            above = e > tolerance
            if not bool(above.any()):
                break
            if gsum is not None:
                if 3 * n > max_steps:
                    break
                n = 3 * n
            else:
                if n >= max_steps:
                    break
                worst = float(e[above].max() / tolerance)
                n = min(max_steps, max(2 * n, math.ceil(1.2 * n * math.sqrt(worst))))
            todo = todo[above]
    return Explanation(
        attributions=attr,
        method="integrated_gradients",
        target=resolved(t, classes),
        meta={
            "completeness_error": err,
            "steps": used,
            "delta": delta,
            "baseline": xb,
            "options": {
                "baseline": baseline if isinstance(baseline, str) else "tensor",
                "steps": n0,
                "rule": rule,
                "tolerance": tolerance,
                "max_steps": max_steps,
                "max_batch": max_batch,
            },
            "passes": s.calls,
        },
    )
