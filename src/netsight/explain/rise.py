"""RISE: the saliency of a pixel is the expected score of randomly masked inputs that keep it.

Petsiuk, Das, Saenko (2018), "RISE: Randomized Input Sampling for Explanation of Black-box Models",
BMVC. Section 3: ``S(λ) = 1 / (E[M] · N) · Σ_i f(I ⊙ M_i) · M_i(λ)`` (eq. 6), with ``E[M] = p``. Masks
(section 3.2): an ``s x s`` grid of cells kept with probability ``p``, bilinearly upsampled to
``(s + 1) · ⌈H / s⌉`` pixels and cropped at a random shift in ``[0, ⌈H / s⌉)`` per axis, so the masks are
smooth and not aligned to the grid. ``f`` is the class probability (the softmax of the logits), as in the
paper; ``output="logit"`` uses the raw score.

Section 4.1's causal metrics are :func:`deletion_insertion`: pixels are removed (set to a substrate,
zero) or inserted (into a blurred copy) in the order of a saliency map, and the area under the score
curve is reported (lower is better for deletion, higher for insertion).

Every masked forward of every sample is one stream of batched forwards, chunked to the free memory;
masks are generated per chunk from a seeded generator on the input's device.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from netsight.errors import ArgumentError

from ._baselines import gaussian_blur
from ._common import TargetSpec, check_inputs, no_layer, resolved, session
from ._explanation import Explanation
from ._features import masked_forwards, reference_scores, rows_limit, rows_per_chunk, sizing_args
from ._forward import forward_args
from ._registry import register

__all__ = ["DeletionInsertion", "deletion_insertion", "rise", "rise_masks"]

_OUTPUTS = ("probability", "logit")


def _check_output(output: str) -> bool:
    if output not in _OUTPUTS:
        raise ArgumentError(f"output: {output!r} is not a score; use 'probability' (the paper's) or 'logit'.")
    return output == "probability"


def _image(inputs: Any, method: str) -> torch.Tensor:
    x = check_inputs(inputs)
    if x.dim() != 4:
        raise ArgumentError(
            f"inputs: {method} masks images [B, C, H, W], got shape {tuple(x.shape)}. For tabular or token "
            "inputs use 'lime', 'kernel_shap' or 'occlusion'."
        )
    return x


def rise_masks(
    grids: torch.Tensor, shifts: torch.Tensor, size: tuple[int, int], cell: tuple[int, int]
) -> torch.Tensor:
    """Petsiuk et al.'s smooth masks ``[m, H, W]`` from binary grids ``[m, s, s]`` and shifts ``[m, 2]``.

    Each grid is upsampled bilinearly to ``(s + 1) · cell`` and cropped to ``size`` at its shift.
    """
    m, s = grids.shape[0], grids.shape[1]
    h, w = size
    up = F.interpolate(
        grids[:, None].float(),
        size=((s + 1) * cell[0], (s + 1) * cell[1]),
        mode="bilinear",
        align_corners=False,
    )[:, 0]  # [m, (s + 1) cell_h, (s + 1) cell_w]
    rows = shifts[:, 0:1] + torch.arange(h, device=grids.device)[None]  # [m, H]
    cols = shifts[:, 1:2] + torch.arange(w, device=grids.device)[None]  # [m, W]
    return up[torch.arange(m, device=grids.device)[:, None, None], rows[:, :, None], cols[:, None, :]]


@register(
    "rise",
    kind="perturbation",
    passes="1 forward + n_masks forwards per sample (batched)",
    summary="sum of random smooth masks weighted by the class probability of the masked input",
    paper="Petsiuk, Das, Saenko 2018, RISE: Randomized Input Sampling for Explanation (BMVC)",
    inputs="image",
)
def rise(
    model: nn.Module,
    inputs: torch.Tensor,
    target: TargetSpec = None,
    *,
    layer: Any = None,
    n_masks: int = 2000,
    cells: int = 7,
    p: float = 0.5,
    baseline: float = 0.0,
    output: str = "probability",
    seed: int = 0,
    max_batch: int | None = None,
    progress: bool | None = None,
    forward_kwargs: Mapping[str, Any] | None = None,
) -> Explanation:
    """RISE saliency (Petsiuk et al. 2018), ``[B, 1, H, W]``.

    Args:
        n_masks: the number of random masks ``N`` (the paper uses 4000 for ResNet-50; 2000 is close).
        cells: the grid size ``s`` of the low-resolution masks (the paper's ``s = 7`` for 224 images).
        p: the probability that a cell is kept.
        baseline: what masked-out pixels become (``I ⊙ M`` in the paper: 0).
        output: ``"probability"`` (the softmax, as in the paper) or ``"logit"``; a callable target gets
            the probabilities or logits accordingly.
        seed: seeds the mask generator (on the input's device), so results repeat.

    ``meta``: ``"scores"`` ``[N, B]`` (the masked inputs' scores), ``"passes"``.
    """
    no_layer("rise", layer)
    x = _image(inputs, "rise")
    if not isinstance(n_masks, int) or n_masks < 1:
        raise ArgumentError(f"n_masks: expected a positive int, got {n_masks!r}.")
    if not isinstance(cells, int) or cells < 1:
        raise ArgumentError(f"cells: expected a positive int (grid cells per side), got {cells!r}.")
    if not 0.0 < p <= 1.0:
        raise ArgumentError(f"p: the probability of keeping a cell must be in (0, 1], got {p!r}.")
    probability = _check_output(output)
    b, _, h, w = x.shape
    cell = (math.ceil(h / cells), math.ceil(w / cells))
    gen = torch.Generator(device=x.device).manual_seed(seed)
    grids = torch.rand((n_masks, cells, cells), generator=gen, device=x.device) < p  # [N, s, s]
    shifts = torch.stack(
        [
            torch.randint(0, cell[0], (n_masks,), generator=gen, device=x.device),
            torch.randint(0, cell[1], (n_masks,), generator=gen, device=x.device),
        ],
        dim=1,
    )  # [N, 2]
    fwd = forward_args(forward_kwargs, x)
    with session(model, freeze=False) as s:  # forwards without gradients: nothing to freeze
        chunk = rows_per_chunk(model, x, max_batch, **sizing_args(fwd))
        _ref, t = reference_scores(model, x, target, chunk=chunk, probability=probability, fwd=fwd)

        def build(lo: int, hi: int) -> tuple[torch.Tensor, torch.Tensor]:
            ids = torch.arange(lo, hi, device=x.device)
            mask_id, sample = ids // b, ids % b
            m = rise_masks(grids[mask_id], shifts[mask_id], (h, w), cell)[:, None].to(x.dtype)  # [m, 1, H, W]
            return x[sample] * m + baseline * (1 - m), sample

        scores = masked_forwards(
            model,
            build,
            n_masks * b,
            t,
            chunk=chunk,
            device=x.device,
            probability=probability,
            progress=progress,
            desc="rise",
            grow_to=rows_limit(model, x, max_batch, **sizing_args(fwd)),
            fwd=fwd,
        ).view(n_masks, b)
    sal = torch.zeros(b, h * w, dtype=torch.float32, device=x.device)
    step = max(1, chunk)
    for lo in range(0, n_masks, step):  # eq. 6, a chunk of masks at a time
        ids = torch.arange(lo, min(lo + step, n_masks), device=x.device)
        m = rise_masks(grids[ids], shifts[ids], (h, w), cell).flatten(1)  # [m, H*W]
        sal += scores[lo : lo + step].T @ m
    sal = (sal / (n_masks * p)).view(b, 1, h, w).to(x.dtype)
    classes = t if isinstance(t, torch.Tensor) else None
    return Explanation(
        attributions=sal,
        method="rise",
        target=resolved(t, classes),
        meta={
            "scores": scores,
            "options": {
                "n_masks": n_masks,
                "cells": cells,
                "p": p,
                "baseline": baseline,
                "output": output,
                "seed": seed,
                "max_batch": max_batch,
            },
            "passes": s.calls,
        },
    )


@dataclass(frozen=True)
class DeletionInsertion:
    """Petsiuk et al.'s causal metrics for a batch of saliency maps.

    Attributes:
        fractions: ``[steps + 1]``, the fraction of pixels removed / inserted at each point.
        deletion: ``[B, steps + 1]``, the score as the most salient pixels are removed (or ``None``).
        insertion: ``[B, steps + 1]``, the score as they are inserted into the blurred image (or ``None``).
        deletion_auc: ``[B]``, the area under the deletion curve (lower is better), or ``None``.
        insertion_auc: ``[B]``, the area under the insertion curve (higher is better), or ``None``.
        target: ``[B]`` the classes scored (``None`` for a callable target).
    """

    fractions: torch.Tensor
    deletion: torch.Tensor | None
    insertion: torch.Tensor | None
    deletion_auc: torch.Tensor | None
    insertion_auc: torch.Tensor | None
    target: torch.Tensor | None


def deletion_insertion(
    model: nn.Module,
    inputs: torch.Tensor,
    saliency: torch.Tensor,
    target: TargetSpec = None,
    *,
    mode: str = "both",
    steps: int = 50,
    substrate: float = 0.0,
    blur_sigma: float = 5.0,
    output: str = "probability",
    max_batch: int | None = None,
    progress: bool | None = None,
    forward_kwargs: Mapping[str, Any] | None = None,
) -> DeletionInsertion:
    """Deletion and insertion curves of ``saliency`` maps (Petsiuk et al. 2018, section 4.1).

    ``inputs``: ``[B, C, H, W]``; ``saliency``: ``[B, 1, H, W]``, ``[B, C, H, W]`` (channels summed) or
    ``[B, H, W]``. Pixels are ranked by saliency (highest first); at step ``j`` of ``steps`` the first
    ``round(j · H · W / steps)`` pixels are set to ``substrate`` (deletion) or copied into a Gaussian-blurred
    copy of the input (insertion, ``blur_sigma`` pixels; the paper's blur). The AUC is the trapezoid rule
    over fractions in ``[0, 1]``. ``mode``: ``"both"``, ``"deletion"`` or ``"insertion"``.
    All ``(steps + 1) · B`` forwards per curve run batched and chunked; the model is left as it was.
    ``forward_kwargs``: keyword arguments of every model call, as in :func:`netsight.explain.explain`.
    """
    x = _image(inputs, "deletion_insertion")
    if mode not in ("both", "deletion", "insertion"):
        raise ArgumentError(f"mode: {mode!r} is not a curve; use 'both', 'deletion' or 'insertion'.")
    if not isinstance(steps, int) or steps < 1:
        raise ArgumentError(f"steps: expected a positive int, got {steps!r}.")
    probability = _check_output(output)
    b, _, h, w = x.shape
    sal = saliency.detach().to(x.device)
    if sal.dim() == 4:
        sal = sal.sum(dim=1)
    if tuple(sal.shape) != (b, h, w):
        raise ArgumentError(
            f"saliency: shape {tuple(saliency.shape)} does not match the inputs {tuple(x.shape)}; pass maps "
            f"[B, 1, H, W] (or [B, H, W]) at the input's size, e.g. explanation.attributions."
        )
    order = sal.flatten(1).float().argsort(dim=1, descending=True, stable=True)  # [B, H*W]
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(h * w, device=x.device).expand(b, -1))
    rank = rank.view(b, 1, h, w)
    counts = torch.round(torch.arange(steps + 1, device=x.device) * (h * w) / steps).long()  # [steps + 1]
    fractions = counts.float() / (h * w)
    blurred = gaussian_blur(x, blur_sigma) if mode in ("both", "insertion") else x
    curves: dict[str, torch.Tensor] = {}
    fwd = forward_args(forward_kwargs, x)
    with session(model, freeze=False):  # forwards without gradients: nothing to freeze
        chunk = rows_per_chunk(model, x, max_batch, **sizing_args(fwd))
        _ref, t = reference_scores(model, x, target, chunk=chunk, probability=probability, fwd=fwd)
        for name in ("deletion", "insertion"):
            if mode not in ("both", name):
                continue

            def build(lo: int, hi: int, name: str = name) -> tuple[torch.Tensor, torch.Tensor]:
                ids = torch.arange(lo, hi, device=x.device)
                step, sample = ids // b, ids % b
                changed = rank[sample] < counts[step][:, None, None, None]  # [m, 1, H, W]
                if name == "deletion":
                    return torch.where(changed, torch.full_like(x[sample], substrate), x[sample]), sample
                return torch.where(changed, x[sample], blurred[sample]), sample

            curves[name] = (
                masked_forwards(
                    model,
                    build,
                    (steps + 1) * b,
                    t,
                    chunk=chunk,
                    device=x.device,
                    probability=probability,
                    progress=progress,
                    desc=name,
                    grow_to=rows_limit(model, x, max_batch, **sizing_args(fwd)),
                    fwd=fwd,
                )
                .view(steps + 1, b)
                .T
            )
    auc = {k: torch.trapezoid(v, fractions[None].to(v.dtype), dim=1) for k, v in curves.items()}
    return DeletionInsertion(
        fractions=fractions,
        deletion=curves.get("deletion"),
        insertion=curves.get("insertion"),
        deletion_auc=auc.get("deletion"),
        insertion_auc=auc.get("insertion"),
        target=t if isinstance(t, torch.Tensor) else None,
    )
