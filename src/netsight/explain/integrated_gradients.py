"""Integrated gradients, with five quadrature rules and an adaptive, per-sample step count.

Sundararajan, Taly, Yan (2017), "Axiomatic Attribution for Deep Networks", ICML, eq. 1 and 3:
``IG_i(x) = (x_i - x'_i) * int_0^1 dF(x' + a (x - x'))/dx_i da``, approximated by a quadrature
``sum_j w_j g(a_j)``. Completeness (their proposition 1): ``sum_i IG_i(x) = F(x) - F(x')``; the gap
``|sum_i IG_i - (F(x) - F(x'))|`` per sample is reported as ``meta["completeness_error"]``.

Rules (nodes ``a_j`` and weights ``w_j`` on [0, 1]): ``riemann_left`` ``j/n``, ``riemann_right``
``(j+1)/n``, ``riemann_middle`` ``(j+1/2)/n`` (weights ``1/n``), ``riemann_trapezoid`` (``n`` equally
spaced nodes with the end points, trapezoid weights), and ``gauss_legendre`` (the ``n``-point
Gauss-Legendre rule mapped to [0, 1]; the default).

Adaptive mode (``tolerance=``; Davis and Rabinowitz, "Methods of Numerical Integration", 1984,
ch. 6, adaptive quadrature): the default rule is ``adaptive_trapezoid``. Every sample starts with the
trapezoid rule on ``steps`` equal intervals (default 8, so 9 nodes with both end points). Each gradient
pass also returns the score ``F`` at its nodes, and ``dF/da = (x - x') . dF/dx`` along the path, so the
error of the trapezoid rule on one interval ``[a, b]`` is known exactly:
``(b - a) / 2 * (h(a) + h(b)) - (F(b) - F(a))`` with ``h = (x - x') . grad F``. These local errors add up to
the sample's completeness error. While that is above ``tolerance`` the sample bisects the quarter of
its intervals with the largest local errors (one new gradient each) and checks again, up to
``max_steps`` nodes; samples already within the tolerance cost nothing more. The rule stays the
trapezoid rule on the sample's final (non-uniform) nodes, and the reported completeness error is
recomputed from the returned attributions. Until a sample finishes, its nodes' gradients are kept (one
input-sized tensor per node, at most ``max_steps``) because bisection changes the weights of the
neighbouring nodes.

With an explicit ``rule=`` and ``tolerance=`` the whole sample is refined instead: ``riemann_middle``
nested (``n`` to ``3n`` midpoints, reusing the ``n`` gradients already summed), another rule recomputed
with at least twice as many nodes (more when its error is far above the tolerance, assuming the error
falls as ``1/n^2``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
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
from ._forward import NO_ARGS, ForwardArgs, forward_args
from ._registry import register

RULES = ("riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "gauss_legendre")
#: the adaptive mode's default rule (needs ``tolerance``): trapezoid rule, bisecting the worst intervals
ADAPTIVE = "adaptive_trapezoid"
_SPLIT = 0.25  # fraction of a sample's intervals bisected per round in the adaptive trapezoid rule
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


#: ``(points, sample index of each, target rows, forward kwargs) -> (dF/dpoints, F)`` for one chunk
PointGradients = Callable[
    [torch.Tensor, torch.Tensor, Target, Mapping[str, Any]], tuple[torch.Tensor, torch.Tensor]
]


def path_integral(  # noqa: PLR0917 - internal, called once with all of them
    model: nn.Module,
    x: torch.Tensor,
    xb: torch.Tensor,
    classes: Target,
    alphas: torch.Tensor,
    weights: torch.Tensor,
    *,
    chunk: int,
    progress: bool | None,
    fwd: ForwardArgs = NO_ARGS,
    gradients: PointGradients | None = None,
    desc: str = "integrated_gradients",
) -> torch.Tensor:
    """``(x - x') * sum_j w_j dF(x' + a_j (x - x'))/dx`` for every sample, chunked over ``B * n`` points.

    Points are made per chunk (never all at once); gradients are summed into one accumulator. Each
    point gets its sample's rows of the forward's keyword arguments ``fwd``. ``gradients(points,
    sample, target, kw) -> (dF/dpoints, F)``: how a chunk of points is differentiated (default: points
    are the model's inputs; ``layer_integrated_gradients`` puts them in place of a layer's output).
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
        if gradients is None:
            g, s, _ = input_gradients(model, pts, tc, fwd.rows(sample))
        else:
            g, s = gradients(pts, sample, tc, fwd.rows(sample))
        acc.index_add_(0, sample, g * w[step].view(view))
        return s

    batched(one, torch.arange(b * n, device=x.device), chunk=chunk, progress=progress, desc=desc)
    return diff * acc


def gradients_at(  # noqa: PLR0917 - internal
    model: nn.Module,
    xb: torch.Tensor,
    diff: torch.Tensor,
    classes: Target,
    sample: torch.Tensor,
    alphas: torch.Tensor,
    *,
    chunk: int,
    progress: bool | None,
    fwd: ForwardArgs = NO_ARGS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients ``[N, ...]`` and scores ``[N]`` at the path points ``x'_s + a (x_s - x'_s)`` for the
    ``N`` pairs ``(sample[k], alphas[k])``, chunked; points are made per chunk (with their samples'
    keyword arguments ``fwd``)."""
    view = (-1,) + (1,) * (xb.dim() - 1)
    a = alphas.to(device=xb.device, dtype=xb.dtype)

    def one(idc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = sample[idc]
        pts = xb[s] + a[idc].view(view) * diff[s]  # [n, ...]
        tc = classes[s] if isinstance(classes, torch.Tensor) else classes
        g, f, _ = input_gradients(model, pts, tc, fwd.rows(s))
        return g, f

    out: tuple[torch.Tensor, torch.Tensor] = batched(
        one,
        torch.arange(sample.numel(), device=xb.device),
        chunk=chunk,
        progress=progress,
        desc="integrated_gradients",
    )
    return out


def adaptive_trapezoid(
    model: nn.Module,
    x: torch.Tensor,
    xb: torch.Tensor,
    classes: Target,
    delta: torch.Tensor,
    *,
    start: int,
    tolerance: float,
    max_steps: int,
    chunk: int,
    progress: bool | None,
    fwd: ForwardArgs = NO_ARGS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Adaptive trapezoid rule per sample (module docstring): ``(attributions, nodes per sample)``.

    Node positions, ``h = (x - x') . grad F`` and ``F`` live per sample on the CPU in float64 (one
    transfer of ``[2, N]`` per round); gradients stay on the device until their sample finishes.
    """
    b = x.shape[0]
    diff = x - xb
    dims = tuple(range(1, x.dim()))
    target_delta = delta.detach().double().cpu()
    empty = torch.empty(0, dtype=torch.float64)
    pos = [empty] * b  # node positions a, in evaluation order
    hs = [empty] * b
    fs = [empty] * b
    grads: list[list[torch.Tensor]] = [[] for _ in range(b)]
    new = [torch.linspace(0.0, 1.0, start + 1, dtype=torch.float64)] * b
    attr = torch.empty_like(x)
    used = torch.zeros(b, dtype=torch.long, device=x.device)
    todo = list(range(b))
    while todo:
        sizes = [new[i].numel() for i in todo]
        sample = torch.repeat_interleave(torch.tensor(todo), torch.tensor(sizes)).to(x.device)
        g, f = gradients_at(
            model,
            xb,
            diff,
            classes,
            sample,
            torch.cat([new[i] for i in todo]),
            chunk=chunk,
            progress=progress,
            fwd=fwd,
        )  # [N, ...], [N]
        hf = torch.stack([(g * diff[sample]).sum(dim=dims), f]).double().cpu()  # [2, N], one transfer
        later = []
        for i, part_g, part_hf in zip(
            todo, torch.split(g, sizes), torch.split(hf, sizes, dim=1), strict=True
        ):
            grads[i].append(part_g)
            pos[i] = torch.cat([pos[i], new[i]])
            hs[i] = torch.cat([hs[i], part_hf[0]])
            fs[i] = torch.cat([fs[i], part_hf[1]])
            order = pos[i].argsort()
            a, h, fv = pos[i][order], hs[i][order], fs[i][order]
            width = a.diff()  # [n - 1]
            trap = width * (h[1:] + h[:-1]) / 2  # trapezoid rule on each interval
            n = a.numel()
            if abs(float(trap.sum() - target_delta[i])) <= tolerance or n >= max_steps:
                w = torch.zeros(n, dtype=torch.float64)
                w[1:] += width / 2
                w[:-1] += width / 2
                gi = torch.cat(grads[i])[order.to(x.device)]  # [n, ...]
                attr[i] = diff[i] * torch.tensordot(w.to(device=x.device, dtype=x.dtype), gi, dims=1)
                used[i] = n
                grads[i] = []
                continue
            local = (trap - fv.diff()).abs()  # exact error of each interval (F is known at its ends)
            k = min(max(1, math.ceil(_SPLIT * width.numel())), max_steps - n)
            worst = local.topk(k).indices
            new[i] = (a[worst] + a[worst + 1]) / 2
            later.append(i)
        todo = later
    return attr, used


def _refine_whole(
    model: nn.Module,
    x: torch.Tensor,
    xb: torch.Tensor,
    tt: Target,
    delta: torch.Tensor,
    *,
    rule: str,
    n0: int,
    tolerance: float | None,
    max_steps: int,
    chunk: int,
    progress: bool | None,
    fwd: ForwardArgs = NO_ARGS,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A fixed rule with ``n0`` nodes; with ``tolerance``, whole samples refined (module docstring).
    Returns ``(attributions, completeness error, nodes per sample)``."""
    dims = tuple(range(1, x.dim()))
    n = n0
    attr = torch.empty_like(x)
    err = torch.empty_like(delta)
    used = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
    todo = torch.arange(x.shape[0], device=x.device)
    nested = tolerance is not None and rule == "riemann_middle"
    gsum = torch.zeros_like(x) if nested else None  # nested mode: unweighted sums of (x-x')*g
    done_nodes = 0
    while True:
        tsub: Target = tt[todo] if isinstance(tt, torch.Tensor) else tt
        fsub = fwd.select(todo)
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
                fwd=fsub,
            )
            gsum[todo] += part
            a = gsum[todo] / n
        else:
            alphas, weights = nodes(rule, n)
            a = path_integral(
                model, x[todo], xb[todo], tsub, alphas, weights, chunk=chunk, progress=progress, fwd=fsub
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
    return attr, err, used


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
    progress: bool | None = None,
    forward_kwargs: Mapping[str, Any] | None = None,
) -> Explanation:
    """Integrated gradients (Sundararajan et al. 2017).

    Args:
        baseline: ``"zero"``, ``"blur"``, ``"uniform"``, a number or a tensor (see ``_baselines``).
        steps: quadrature nodes per sample (default 50); with ``tolerance``, where refinement starts:
            8 intervals (9 nodes) for ``adaptive_trapezoid``, 6 nodes for an explicit rule.
        rule: one of ``riemann_left``, ``riemann_right``, ``riemann_middle``, ``riemann_trapezoid``,
            ``gauss_legendre``, or ``adaptive_trapezoid`` (needs ``tolerance``); default
            ``gauss_legendre``, or ``adaptive_trapezoid`` with ``tolerance``.
        tolerance: adaptive mode: refine each sample until its completeness error is at most this
            (in units of the score), or until ``max_steps`` nodes. Completeness is one number per
            sample: a map within the tolerance can still be farther from the exact integral than a
            fixed rule with more nodes (docs/benchmarks.md).
        max_steps: the most gradient evaluations (nodes) per sample in the adaptive mode.

    ``meta["steps"]`` holds the gradient evaluations (nodes) each sample used.
    """
    no_layer("integrated_gradients", layer)
    x = check_inputs(inputs).detach()
    if rule is None:
        rule = ADAPTIVE if tolerance is not None else "gauss_legendre"
    rule = _ALIASES.get(rule, rule)
    if rule not in (*RULES, ADAPTIVE):
        raise ArgumentError(f"rule: unknown rule {rule!r}; use one of {', '.join((*RULES, ADAPTIVE))}.")
    if tolerance is not None and (
        isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not tolerance > 0
    ):
        raise ArgumentError(f"tolerance: expected a positive number (score units), got {tolerance!r}.")
    if rule == ADAPTIVE and tolerance is None:
        raise ArgumentError(
            f"rule: {ADAPTIVE!r} refines until a tolerance is met; pass tolerance= (score units) or "
            "choose a fixed rule."
        )
    n0 = steps if steps is not None else (8 if rule == ADAPTIVE else 6 if tolerance is not None else 50)
    nodes("riemann_middle" if rule == ADAPTIVE else rule, n0)  # validates steps
    if rule == ADAPTIVE and (
        isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < n0 + 1
    ):
        raise ArgumentError(
            f"max_steps: expected an int >= steps + 1 = {n0 + 1} (the adaptive trapezoid rule starts with "
            f"steps + 1 nodes), got {max_steps!r}."
        )
    t = prepare_target(target, x.shape[0], x.device)
    fwd = forward_args(forward_kwargs, x)
    xb = make_baseline(x, baseline, blur_sigma=blur_sigma, generator=generator)
    with session(model) as s:
        chunk = chunk_size(model, x, max_batch=max_batch, fwd=fwd)
        fwd_chunk = chunk_size(model, x, max_batch=max_batch, backward=False, fwd=fwd)

        def ends(xc: torch.Tensor, tc: Any, kw: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
            with torch.no_grad():
                out = model(xc, **kw)
            tt = resolve_chunk(out, tc)
            classes = tt if isinstance(tt, torch.Tensor) else torch.full((xc.shape[0],), -1, device=xc.device)
            return score(out, tt), classes

        fx, classes = with_target(ends, x, t, chunk=fwd_chunk, fwd=fwd)
        tt: Target = classes if isinstance(t, torch.Tensor) else t
        fb = with_target(
            lambda xc, tc, kw: forward_scores(model, xc, tc, kw), xb, tt, chunk=fwd_chunk, fwd=fwd
        )
        delta = fx - fb
        dims = tuple(range(1, x.dim()))

        if rule == ADAPTIVE:
            assert tolerance is not None  # checked above
            attr, used = adaptive_trapezoid(
                model,
                x,
                xb,
                tt,
                delta,
                start=n0,
                tolerance=float(tolerance),
                max_steps=max_steps,
                chunk=chunk,
                progress=progress,
                fwd=fwd,
            )
            err = (attr.sum(dim=dims) - delta).abs()
        else:
            attr, err, used = _refine_whole(
                model,
                x,
                xb,
                tt,
                delta,
                rule=rule,
                n0=n0,
                tolerance=tolerance,
                max_steps=max_steps,
                chunk=chunk,
                progress=progress,
                fwd=fwd,
            )
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
