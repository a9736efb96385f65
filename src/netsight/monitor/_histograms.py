"""Per-layer histograms of many tensors in one ``bucketize`` + one weighted ``bincount``.

Each tensor is sampled with an even stride down to at most ``sample`` elements (its counts are then
scaled by ``numel / sampled``, as :class:`netsight.capture.reducers.Histogram` does for one tensor),
the samples of all tensors are concatenated, and ``bincount(layer * (E + 1) + bin)`` gives the
``[L, E + 1]`` counts of every layer at once. Bins are those of ``torch.bucketize(v, edges, right=True)``:
bin 0 holds values below ``edges[0]``, bin ``E`` values at or above ``edges[-1]``. NaN is not counted.
"""

from __future__ import annotations

import torch


def histograms(
    tensors: list[torch.Tensor], owner: list[int], layers: int, edges: torch.Tensor, sample: int | None
) -> torch.Tensor:
    """``[layers, len(edges) + 1]`` float64 counts of the tensors, pooled by ``owner`` (layer index)."""
    bins = edges.numel() + 1
    if not tensors:
        return torch.zeros((layers, bins), dtype=torch.float64, device=edges.device)
    dev = tensors[0].device
    vals: list[torch.Tensor] = []
    keys: list[torch.Tensor] = []
    weights: list[torch.Tensor] = []
    for t, layer in zip(tensors, owner):
        v = t.detach().reshape(-1)
        n = v.numel()
        if n == 0:
            continue
        if sample is not None and n > sample:
            v = v[:: n // sample]
        v = v.to(dev, torch.float32)
        vals.append(v)
        keys.append(torch.full((v.numel(),), layer * bins, dtype=torch.long, device=dev))
        weights.append(torch.full((v.numel(),), n / v.numel(), dtype=torch.float64, device=dev))
    if not vals:
        return torch.zeros((layers, bins), dtype=torch.float64, device=dev)
    v = torch.cat(vals)
    k = torch.cat(keys) + torch.bucketize(v, edges.to(dev, torch.float32), right=True)
    w = torch.cat(weights)
    ok = ~torch.isnan(v)
    counts = torch.bincount(k[ok], weights=w[ok], minlength=layers * bins)
    return counts.reshape(layers, bins)
