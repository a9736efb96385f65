"""Feature ablation: each feature's attribution is the score lost when that feature alone is removed.

``φ_i = f(x) - f(x with feature i set to the baseline)``, one forward per feature: the leave-one-out
perturbation baseline of the attribution literature (Zeiler & Fergus 2014 slide one occluding patch; here
any grouping: superpixels, grid cells, tokens, tabular columns, or a ``feature_mask`` of your own, as
Captum's ``FeatureAblation``). Features are the ones LIME and KernelSHAP use
(:mod:`netsight.explain._features`); the ``M + 1`` forwards of every sample are batched and chunked on the
input's device. Unlike KernelSHAP's values, the attributions need not add up to ``f(x) - f(baseline)``
(interactions between features are not shared out): ``meta["completeness_error"]`` says by how much.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ._common import TargetSpec, check_inputs, no_layer, resolved
from ._explanation import Explanation
from ._features import fill_values, make_features, score_feature_groups, spread_features
from ._forward import forward_args
from ._registry import register


@register(
    "feature_ablation",
    kind="perturbation",
    passes="M + 2 forwards per sample (M = features; batched)",
    summary="f(x) - f(x with one feature at the baseline), per superpixel / cell / token / column",
    paper="Zeiler & Fergus 2014 (occlusion); leave-one-out feature ablation as in Captum's FeatureAblation",
    inputs="image",
)
def feature_ablation(
    model: nn.Module,
    inputs: torch.Tensor,
    target: TargetSpec = None,
    *,
    layer: Any = None,
    features: str | None = None,
    feature_mask: torch.Tensor | None = None,
    n_segments: int = 50,
    compactness: float = 10.0,
    grid: int | Sequence[int] = 8,
    baseline: float | torch.Tensor = 0.0,
    max_batch: int | None = None,
    progress: bool | None = None,
    forward_kwargs: Mapping[str, Any] | None = None,
) -> Explanation:
    """Leave-one-feature-out ablation over images (superpixels or cells), token ids or tabular columns.

    Args:
        features / feature_mask / n_segments / compactness / grid: the features, as for LIME and
            KernelSHAP (:func:`netsight.explain._features.make_features`); ``feature_mask`` ``[B, ...]``
            (or one for all samples) gives each element its feature id (``-1``: never ablated).
        baseline: the value a removed feature takes (a number, a token id, or a tensor broadcastable to
            the inputs).

    Returns attributions of the inputs' shape: each element carries its feature's score drop.
    ``meta``: ``"feature_values"`` (a list of ``[M_b]``), ``"base_value"`` ``[B]`` (``f(baseline)``),
    ``"completeness_error"`` ``[B]`` (``|Σ φ - (f(x) - f(baseline))|``), ``"features"``, ``"passes"``.
    """
    no_layer("feature_ablation", layer)
    x = check_inputs(inputs, floating=False)
    feats = make_features(
        x, features, feature_mask=feature_mask, n_segments=n_segments, compactness=compactness, grid=grid
    )
    fill = fill_values(x, baseline, None)

    def coalitions(m: int) -> torch.Tensor:  # nothing kept, everything kept, then all but one feature
        keep = ~torch.eye(m, dtype=torch.bool, device=x.device)
        ends = torch.tensor([[False] * m, [True] * m], device=x.device)
        return torch.cat([ends, keep])

    groups, t, calls = score_feature_groups(
        model,
        x,
        target,
        feats,
        fill,
        coalitions=coalitions,
        max_batch=max_batch,
        progress=progress,
        desc="feature_ablation",
        fwd=forward_args(forward_kwargs, x),
    )
    b = x.shape[0]
    values = torch.zeros((b, max(feats.counts)), dtype=torch.float64, device=x.device)
    base = torch.zeros(b, dtype=torch.float64, device=x.device)
    gap = torch.zeros(b, dtype=torch.float64, device=x.device)
    for g in groups:
        f0, fx = g.y[0].double(), g.y[1].double()  # [Bg]: f(baseline), f(x)
        phi = (fx[None] - g.y[2:].double()).T  # [Bg, M]
        values[g.idx, : g.m] = phi
        base[g.idx] = f0
        gap[g.idx] = (phi.sum(dim=1) - (fx - f0)).abs()
    per_feature = values.float()
    classes = t if isinstance(t, torch.Tensor) else None
    return Explanation(
        attributions=spread_features(feats, per_feature, x),
        method="feature_ablation",
        target=resolved(t, classes),
        meta={
            "feature_values": feats.unpad(per_feature),
            "base_value": base.float(),
            "completeness_error": gap.float(),
            "features": feats.labels,
            "feature_kind": feats.kind,
            "options": {"features": feats.kind, "baseline": baseline, "max_batch": max_batch},
            "passes": calls,
        },
    )
