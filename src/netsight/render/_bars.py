"""Bar charts of per-feature attributions (tabular columns, tokens), drawn with matplotlib.

The picture SHAP users know from its bar and waterfall plots: the features with the largest
attributions, largest on top, red where a feature pushes the explained score up and blue where it pulls
it down, and one grey bar for the sum of all the others, so the bars still add up to the total.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..errors import ArgumentError

__all__ = ["POSITIVE", "NEGATIVE", "OTHERS", "attribution_bars", "top_features"]

POSITIVE = "#d62728"  # pushes the score up
NEGATIVE = "#1f77b4"  # pulls it down
OTHERS = "#9e9e9e"  # the rest, summed


def top_features(values: torch.Tensor, top: int) -> tuple[list[int], float, int]:
    """``(indices of the top |value| features, largest first; sum of the others; how many others)``."""
    if values.dim() != 1:
        raise ArgumentError(
            f"values: expected one attribution per feature [F], got shape {tuple(values.shape)}."
        )
    if not isinstance(top, int) or isinstance(top, bool) or top < 1:
        raise ArgumentError(f"top: expected a positive int (features drawn), got {top!r}.")
    v = values.detach().double().cpu()
    order = torch.argsort(v.abs(), descending=True, stable=True)
    keep = order[:top].tolist()
    rest = order[top:]
    return keep, float(v[rest].sum()) if rest.numel() else 0.0, int(rest.numel())


def attribution_bars(
    values: torch.Tensor,
    *,
    names: Sequence[str] | None = None,
    top: int = 12,
    title: str = "",
    ax: Any = None,
) -> Any:
    """Draw the ``top`` features of ``values`` ``[F]`` as horizontal bars on ``ax`` (a new figure's
    axes when None); the remaining features' sum is one more grey bar. Returns the axes."""
    import matplotlib.pyplot as plt

    f = values.shape[-1]
    if names is not None and len(names) != f:
        raise ArgumentError(f"names: got {len(names)} names for {f} features; pass one name per feature.")
    labels = list(names) if names is not None else [f"feature {j}" for j in range(f)]
    keep, others, n_others = top_features(values, top)
    v = values.detach().double().cpu()
    widths = [float(v[j]) for j in keep]
    ticks = [labels[j] for j in keep]
    colours = [POSITIVE if w > 0 else NEGATIVE for w in widths]
    if n_others:
        widths.append(others)
        ticks.append(f"{n_others} other feature{'s' if n_others > 1 else ''}")
        colours.append(OTHERS)
    if ax is None:
        _, ax = plt.subplots(figsize=(5.0, 0.3 * len(widths) + 0.9))
    pos = list(range(len(widths)))[::-1]  # the largest on top
    bars = ax.barh(pos, widths, color=colours, height=0.7)
    ax.bar_label(bars, labels=[f"{w:+.3g}" for w in widths], fontsize=7, padding=2)
    ax.margins(x=0.15)  # room for the labels
    ax.set_yticks(pos, ticks, fontsize=8)
    ax.axvline(0.0, color="black", linewidth=0.6)
    ax.set_xlabel("attribution", fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    if title:
        ax.set_title(title, fontsize=9)
    return ax
