"""LIME: a weighted linear model of the prediction over interpretable features, fitted locally.

Ribeiro, Singh, Guestrin (2016), "'Why Should I Trust You?': Explaining the Predictions of Any
Classifier", KDD. Section 3.3-3.4: perturbed samples ``z'`` are drawn around the instance ``x'`` (all
features on) by switching features off, "drawing nonzero elements of x' uniformly at random (where the
number of such draws is also uniformly sampled)" (``sampler="count"``; the ``lime`` package's image
explainer instead switches each feature on with probability 1/2: ``sampler="bernoulli"``). Each is
weighted by the exponential kernel ``π_x(z) = exp(-D(x, z)² / sigma²)`` (eq. 3) on the cosine distance
(``distance="cosine"``, the paper's choice for text and the ``lime`` package's for images) or the L2
distance, and the explanation is the weighted ridge regression ``g`` of the model's score on ``z'`` with
an unpenalised intercept (the ``lime`` package's ``Ridge(alpha=1)``).

The ``lime`` package's kernel is ``sqrt(exp(-d² / w²))``, which is this one with ``sigma = √2 · w``.

Features are image superpixels (SLIC) or grid cells, tokens or tabular columns
(:mod:`netsight.explain._features`, shared with KernelSHAP). The perturbed forwards run batched and
chunked on the input's device; the regression is solved in torch (``torch.linalg``), in float64.
"""

from __future__ import annotations

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

__all__ = ["lime", "lime_samples", "weighted_ridge"]

_SAMPLERS = ("count", "bernoulli")
_DISTANCES = ("cosine", "euclidean")


def lime_samples(
    m: int, n: int, sampler: str, generator: torch.Generator, device: torch.device
) -> torch.Tensor:
    """``n`` binary samples ``[n, M]``: the instance itself (all on) first, then random perturbations.

    ``"count"``: the number of features switched off is uniform in ``1 .. M``, which ones uniform
    (Ribeiro et al. 2016, section 3.3); ``"bernoulli"``: each feature on with probability 1/2.
    """
    if sampler not in _SAMPLERS:
        raise ArgumentError(f"sampler: {sampler!r} is not a sampler; use one of {', '.join(_SAMPLERS)}.")
    rest = n - 1
    if sampler == "bernoulli":
        z = torch.rand((rest, m), generator=generator, device=device) < 0.5
    else:
        off = torch.randint(1, m + 1, (rest, 1), generator=generator, device=device)
        order = torch.rand((rest, m), generator=generator, device=device).argsort(dim=1).argsort(dim=1)
        z = order >= off  # a uniformly random set of `off` features is off
    return torch.cat([torch.ones((1, m), dtype=torch.bool, device=device), z])


def lime_kernel(z: torch.Tensor, distance: str, width: float) -> torch.Tensor:
    """``exp(-D(1, z)² / sigma²)`` ``[n]`` for binary samples ``z`` ``[n, M]`` (the instance is all ones)."""
    m = z.shape[1]
    on = z.sum(dim=1, dtype=torch.float64)
    if distance == "cosine":  # 1 - z·1 / (|z| |1|); an all-off sample is at distance 1
        d = torch.where(on > 0, 1 - torch.sqrt(on / m), torch.ones_like(on))
    else:
        d = torch.sqrt(m - on)
    return torch.exp(-(d**2) / width**2)


def weighted_ridge(
    z: torch.Tensor, y: torch.Tensor, weights: torch.Tensor, alpha: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Weighted ridge regression with an unpenalised intercept, for several targets at once.

    Minimises ``Σ_i w_i (y_i - b - z_i · β)² + alpha ‖β‖²`` per column of ``y`` ``[n, B]``, with ``z``
    ``[n, M]`` and ``w`` ``[n]``. Returns ``(β [B, M], b [B], R² [B])`` (R² weighted, as LIME reports).
    Float64, on the inputs' device.
    """
    zf, yf, wf = z.double(), y.double(), weights.double()
    sw = wf.sum()
    zm = (wf[:, None] * zf).sum(dim=0) / sw  # [M]
    ym = (wf[:, None] * yf).sum(dim=0) / sw  # [B]
    zc, yc = zf - zm, yf - ym
    gram = zc.T @ (wf[:, None] * zc)  # [M, M]
    gram = gram + alpha * torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
    rhs = zc.T @ (wf[:, None] * yc)  # [M, B]
    beta = torch.linalg.pinv(gram, hermitian=True) @ rhs if alpha == 0 else torch.linalg.solve(gram, rhs)
    intercept = ym - zm @ beta
    resid = yc - zc @ beta
    ss_res = (wf[:, None] * resid**2).sum(dim=0)
    ss_tot = (wf[:, None] * yc**2).sum(dim=0)
    r2 = torch.where(ss_tot > 0, 1 - ss_res / ss_tot.clamp_min(1e-300), torch.ones_like(ss_tot))
    return beta.T, intercept, r2


@register(
    "lime",
    kind="perturbation",
    passes="n_samples forwards per sample (x background rows; batched) + 1 weighted ridge solve",
    summary="weighted ridge regression of the score on switched-off superpixels / tokens / columns",
    paper="Ribeiro, Singh, Guestrin 2016, 'Why Should I Trust You?' (KDD)",
    inputs="image",
)
def lime(
    model: nn.Module,
    inputs: torch.Tensor,
    target: TargetSpec = None,
    *,
    layer: Any = None,
    n_samples: int = 1000,
    features: str | None = None,
    feature_mask: torch.Tensor | None = None,
    n_segments: int = 50,
    compactness: float = 10.0,
    grid: int | Sequence[int] = 8,
    baseline: float | torch.Tensor = 0.0,
    background: torch.Tensor | None = None,
    sampler: str = "count",
    distance: str = "cosine",
    kernel_width: float | None = None,
    alpha: float = 1.0,
    seed: int = 0,
    max_batch: int | None = None,
    progress: bool | None = None,
    forward_kwargs: Mapping[str, Any] | None = None,
) -> Explanation:
    """LIME (Ribeiro et al. 2016) over images (superpixels or grid cells), token ids or tabular columns.

    Args:
        n_samples: perturbed samples per input (the first is the instance itself).
        features / feature_mask / n_segments / compactness / grid: the interpretable features (see
            :func:`netsight.explain._features.make_features`): SLIC superpixels by default for images,
            one per token for ``[B, T]`` integer inputs, one per column for ``[B, F]`` float inputs.
        baseline: the value of a switched-off feature: a number (a token id for text: the pad or
            ``[MASK]`` id) or a tensor broadcastable to the inputs. ``background``: ``[K, *S]`` rows
            instead (tabular), the score is averaged over them.
        sampler: ``"count"`` (the paper's) or ``"bernoulli"`` (the ``lime`` image explainer's).
        distance / kernel_width: the kernel ``exp(-D² / sigma²)``; ``sigma`` defaults to 0.25 for the cosine
            distance and ``0.75 · sqrt(M)`` for the euclidean one (the ``lime`` package's widths).
        alpha: the ridge penalty (``lime``'s ``Ridge(alpha=1)``).
        seed: seeds the sampler (a generator on the input's device).

    Returns attributions of the inputs' shape: each element carries its feature's coefficient.
    ``meta``: ``"coefficients"`` (a list of ``[M_b]``), ``"intercept"`` ``[B]``, ``"r2"`` ``[B]``
    (weighted fit quality), ``"features"`` (the labels ``[B, *S]``), ``"passes"``.
    """
    no_layer("lime", layer)
    x = check_inputs(inputs, floating=False)
    if not isinstance(n_samples, int) or n_samples < 2:
        raise ArgumentError(
            f"n_samples: expected an int >= 2 (the instance plus perturbations), got {n_samples!r}."
        )
    if distance not in _DISTANCES:
        raise ArgumentError(f"distance: {distance!r} is not a distance; use one of {', '.join(_DISTANCES)}.")
    if sampler not in _SAMPLERS:
        raise ArgumentError(f"sampler: {sampler!r} is not a sampler; use one of {', '.join(_SAMPLERS)}.")
    if kernel_width is not None and not kernel_width > 0:
        raise ArgumentError(f"kernel_width: expected a positive number, got {kernel_width!r}.")
    if not alpha >= 0:
        raise ArgumentError(f"alpha: the ridge penalty must be >= 0, got {alpha!r}.")
    feats = make_features(
        x, features, feature_mask=feature_mask, n_segments=n_segments, compactness=compactness, grid=grid
    )
    fill = fill_values(x, baseline, background)
    gen = torch.Generator(device=x.device).manual_seed(seed)
    b = x.shape[0]
    coefficients = torch.zeros((b, max(feats.counts)), dtype=torch.float64, device=x.device)  # [B, M_max]
    intercept = torch.zeros(b, dtype=torch.float64, device=x.device)
    r2 = torch.zeros(b, dtype=torch.float64, device=x.device)
    groups, t, calls = score_feature_groups(
        model,
        x,
        target,
        feats,
        fill,
        coalitions=lambda m: lime_samples(m, n_samples, sampler, gen, x.device),  # [n, M]
        max_batch=max_batch,
        progress=progress,
        desc="lime",
        fwd=forward_args(forward_kwargs, x),
    )
    for g in groups:
        width = (
            kernel_width
            if kernel_width is not None
            else (0.25 if distance == "cosine" else 0.75 * math.sqrt(g.m))
        )
        beta, b0, fit = weighted_ridge(g.z, g.y, lime_kernel(g.z, distance, width), alpha)
        coefficients[g.idx, : g.m] = beta
        intercept[g.idx], r2[g.idx] = b0, fit
    per_feature = coefficients.float()  # [B, M_max]
    attr = spread_features(feats, per_feature, x)
    classes = t if isinstance(t, torch.Tensor) else None
    return Explanation(
        attributions=attr,
        method="lime",
        target=resolved(t, classes),
        meta={
            "coefficients": feats.unpad(per_feature),
            "intercept": intercept.float(),
            "r2": r2.float(),
            "features": feats.labels,
            "feature_kind": feats.kind,
            "options": {
                "n_samples": n_samples,
                "features": feats.kind,
                "sampler": sampler,
                "distance": distance,
                "kernel_width": kernel_width,
                "alpha": alpha,
                "seed": seed,
                "max_batch": max_batch,
            },
            "passes": calls,
        },
    )
