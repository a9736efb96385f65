"""KernelSHAP: Shapley values as a weighted linear regression over feature coalitions.

Lundberg & Lee (2017), "A Unified Approach to Interpreting Model Predictions", NeurIPS, theorem 2 (the
Shapley kernel): with ``M`` features and a coalition ``z`` of ``|z|`` features kept (the rest set to a
baseline, or to the rows of a background set with the score averaged over them), the linear model
``g(z) = φ0 + Σ φ_i z_i`` fitted by weighted least squares with

    π(z) = (M - 1) / (C(M, |z|) · |z| · (M - |z|))

recovers the Shapley values ``φ_i``. The infinite weights of the empty and the full coalition are
enforced as constraints: ``φ0 = f(baseline)`` and ``Σ φ_i = f(x) - f(baseline)`` (efficiency), by
eliminating the last feature and solving the remaining weighted least squares in torch (float64).

Coalitions: with ``n_samples >= 2^M - 2`` every coalition is enumerated with its exact kernel weight, and
the result is the exact Shapley values. Otherwise, as in the paper's reference implementation, coalition
sizes are taken in complementary pairs ``(s, M - s)`` from the smallest: a size whose subsets all fit the
remaining budget (at its share of the kernel's mass) is enumerated whole, with exact weights; the rest
are sampled, a size drawn in proportion to the kernel's mass and a subset uniformly, each sample paired
with its complement, sharing the remaining mass equally.

Features (superpixels, grid cells, tokens, columns) are the ones LIME uses
(:mod:`netsight.explain._features`); the model calls are batched and chunked on the input's device.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from netsight.errors import ArgumentError

from ._common import TargetSpec, check_inputs, no_layer, resolved
from ._explanation import Explanation
from ._features import fill_values, make_features, score_feature_groups, spread_features
from ._forward import forward_args
from ._registry import register

__all__ = ["kernel_shap", "shapley_coalitions", "shapley_kernel", "solve_shapley"]

_MAX_ENUMERATED_FEATURES = 24  # 2^24 coalitions is the most ever enumerated whole


def shapley_kernel(m: int, size: torch.Tensor) -> torch.Tensor:
    """π(z) = (M - 1) / (C(M, |z|) |z| (M - |z|)) for coalition sizes ``0 < |z| < M`` (float64)."""
    s = size.double()
    log_binom = math.lgamma(m + 1) - torch.lgamma(s + 1) - torch.lgamma(m - s + 1)
    return (m - 1) / (torch.exp(log_binom) * s * (m - s))


def _bits(codes: torch.Tensor, m: int) -> torch.Tensor:
    """Integers ``[n]`` -> their ``m`` low bits ``[n, m]`` (bool)."""
    return (codes[:, None] >> torch.arange(m, device=codes.device)[None]) & 1 == 1


def _subsets_of_size(m: int, size: int, device: torch.device) -> torch.Tensor:
    """Every subset of ``size`` of ``m`` features, ``[C(m, size), m]`` bool (a one-off setup, bounded
    by the sample budget)."""
    if size > m - size:
        return ~_subsets_of_size(m, m - size, device)
    rows = list(itertools.combinations(range(m), size))
    z = torch.zeros((len(rows), m), dtype=torch.bool, device=device)
    if size == 0:
        return z
    return z.scatter_(1, torch.tensor(rows, device=device), True)


def shapley_coalitions(
    m: int, n_samples: int, generator: torch.Generator, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Coalitions ``[n, M]`` (bool, none empty or full) and their regression weights ``[n]`` (float64).

    Returns ``(z, weights, exact)``; ``exact`` is True when every coalition was enumerated.
    """
    if m <= _MAX_ENUMERATED_FEATURES and n_samples >= 2**m - 2:
        z = _bits(torch.arange(1, 2**m - 1, device=device), m)
        return z, shapley_kernel(m, z.sum(dim=1)), True
    mass = {k: (m - 1) / (k * (m - k)) for k in range(1, m)}  # the kernel's total mass per size
    parts: list[torch.Tensor] = []
    weights: list[torch.Tensor] = []
    left = n_samples
    rest = list(range(1, m))
    for s in range(1, m // 2 + 1):  # sizes in complementary pairs, smallest first
        pair = sorted({s, m - s})
        count = sum(math.comb(m, k) for k in pair)
        share = sum(mass[k] for k in pair) / sum(mass[k] for k in rest)
        if count > left or left * share < count:
            break
        for k in pair:
            zk = _subsets_of_size(m, k, device)
            parts.append(zk)
            weights.append(shapley_kernel(m, torch.full((zk.shape[0],), k, device=device)))
            rest.remove(k)
        left -= count
    if rest and left > 0:
        rest_sizes = torch.tensor(rest, device=device)
        rest_mass = torch.tensor([mass[k] for k in rest], dtype=torch.float64, device=device)
        n_pairs, odd = divmod(left, 2)
        draws = n_pairs + odd
        size = rest_sizes[torch.multinomial(rest_mass, draws, True, generator=generator)]
        order = torch.rand((draws, m), generator=generator, device=device).argsort(dim=1).argsort(dim=1)
        z = order < size[:, None]  # a uniform subset of each drawn size
        sampled = torch.cat([z, ~z[:n_pairs]])  # each paired with its complement (an odd one alone)
        parts.append(sampled)
        total = sum(mass[k] for k in rest)
        weights.append(
            torch.full((sampled.shape[0],), total / sampled.shape[0], dtype=torch.float64, device=device)
        )
    z = torch.cat(parts) if parts else torch.zeros((0, m), dtype=torch.bool, device=device)
    w = torch.cat(weights).double() if weights else torch.zeros(0, dtype=torch.float64, device=device)
    return z, w, False


def solve_shapley(
    z: torch.Tensor, y: torch.Tensor, weights: torch.Tensor, f0: torch.Tensor, fx: torch.Tensor
) -> torch.Tensor:
    """Weighted least squares with ``φ0 = f0`` and ``Σ φ = fx - f0`` enforced; ``φ`` ``[B, M]``.

    ``z``: ``[n, M]``; ``y``: ``[n, B]``; ``weights``: ``[n]``; ``f0``, ``fx``: ``[B]``. The last feature
    is eliminated (``φ_M = Δ - Σ_{i<M} φ_i``), the rest solved from the normal equations (float64;
    a pseudo-inverse covers too few coalitions).
    """
    zf, w = z.double(), weights.double()
    delta = (fx - f0).double()  # [B]
    m = zf.shape[1]
    if m == 1:
        return delta[:, None]
    a = zf[:, :-1] - zf[:, -1:]  # [n, M-1]
    rhs = y.double() - f0.double()[None] - zf[:, -1:] * delta[None]  # [n, B]
    gram = a.T @ (w[:, None] * a)
    phi = torch.linalg.pinv(gram, hermitian=True) @ (a.T @ (w[:, None] * rhs))  # [M-1, B]
    last = delta - phi.sum(dim=0)
    return torch.cat([phi, last[None]]).T


@register(
    "kernel_shap",
    kind="perturbation",
    passes="n_samples + 2 forwards per sample (x background rows; batched) + 1 least-squares solve",
    summary="Shapley values of superpixels / tokens / columns by the Shapley-kernel weighted regression",
    paper="Lundberg & Lee 2017, A Unified Approach to Interpreting Model Predictions (NeurIPS)",
    inputs="image",
)
def kernel_shap(
    model: nn.Module,
    inputs: torch.Tensor,
    target: TargetSpec = None,
    *,
    layer: Any = None,
    n_samples: int | None = None,
    features: str | None = None,
    feature_mask: torch.Tensor | None = None,
    n_segments: int = 50,
    compactness: float = 10.0,
    grid: int | Sequence[int] = 8,
    baseline: float | torch.Tensor = 0.0,
    background: torch.Tensor | None = None,
    seed: int = 0,
    max_batch: int | None = None,
    progress: bool | None = None,
    forward_kwargs: Mapping[str, Any] | None = None,
) -> Explanation:
    """KernelSHAP (Lundberg & Lee 2017) over images (superpixels or cells), token ids or tabular columns.

    Args:
        n_samples: coalitions per input; default ``2 M + 2048`` (the ``shap`` package's), never more
            than the ``2^M - 2`` that exist (then the values are exact).
        features / feature_mask / n_segments / compactness / grid: the interpretable features, as for
            LIME (:func:`netsight.explain._features.make_features`).
        baseline: the value of a feature left out of a coalition (a number, a token id for text, or a
            tensor broadcastable to the inputs). ``background``: ``[K, *S]`` rows instead (tabular; the
            ``shap`` package's background data), the score averaged over them.
        seed: seeds the coalition sampler (a generator on the input's device).

    Returns attributions of the inputs' shape: each element carries its feature's Shapley value.
    ``meta``: ``"shapley_values"`` (a list of ``[M_b]``), ``"base_value"`` ``[B]`` (``f(baseline)``),
    ``"completeness_error"`` ``[B]`` (``|Σ φ - (f(x) - f(baseline))|``, zero up to rounding),
    ``"exact"`` (every coalition enumerated), ``"features"``, ``"passes"``.
    """
    no_layer("kernel_shap", layer)
    x = check_inputs(inputs, floating=False)
    if n_samples is not None and (not isinstance(n_samples, int) or n_samples < 1):
        raise ArgumentError(f"n_samples: expected a positive int or None (automatic), got {n_samples!r}.")
    feats = make_features(
        x, features, feature_mask=feature_mask, n_segments=n_segments, compactness=compactness, grid=grid
    )
    fill = fill_values(x, baseline, background)
    gen = torch.Generator(device=x.device).manual_seed(seed)
    b = x.shape[0]
    values = torch.zeros((b, max(feats.counts)), dtype=torch.float64, device=x.device)  # [B, M_max]
    base = torch.zeros(b, dtype=torch.float64, device=x.device)
    gap = torch.zeros(b, dtype=torch.float64, device=x.device)
    weights: dict[int, tuple[torch.Tensor, bool]] = {}

    def coalitions(m: int) -> torch.Tensor:  # the empty and the full coalition first, then the sample
        budget = n_samples if n_samples is not None else 2 * m + 2048
        z, w, exact = shapley_coalitions(m, budget, gen, x.device)
        weights[m] = (w, exact)
        ends = torch.tensor([[False] * m, [True] * m], device=x.device)
        return torch.cat([ends, z])

    groups, t, calls = score_feature_groups(
        model,
        x,
        target,
        feats,
        fill,
        coalitions=coalitions,
        max_batch=max_batch,
        progress=progress,
        desc="kernel_shap",
        fwd=forward_args(forward_kwargs, x),
    )
    for g in groups:
        w, _exact = weights[g.m]
        f0, fx = g.y[0], g.y[1]  # f(baseline), f(x)
        phi = solve_shapley(g.z[2:], g.y[2:], w, f0, fx)  # [Bg, M]
        values[g.idx, : g.m] = phi
        base[g.idx] = f0.double()
        gap[g.idx] = (phi.sum(dim=1) - (fx - f0).double()).abs()
    exact_all = all(exact for _, exact in weights.values())
    per_feature = values.float()  # [B, M_max]
    attr = spread_features(feats, per_feature, x)
    classes = t if isinstance(t, torch.Tensor) else None
    return Explanation(
        attributions=attr,
        method="kernel_shap",
        target=resolved(t, classes),
        meta={
            "shapley_values": feats.unpad(per_feature),
            "base_value": base.float(),
            "completeness_error": gap.float(),
            "exact": exact_all,
            "features": feats.labels,
            "feature_kind": feats.kind,
            "options": {
                "n_samples": n_samples,
                "features": feats.kind,
                "baseline": baseline,
                "background": None if background is None else tuple(background.shape),
                "seed": seed,
                "max_batch": max_batch,
            },
            "passes": calls,
        },
    )
