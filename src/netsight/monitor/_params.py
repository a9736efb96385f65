"""Per-layer parameter statistics in fused passes: gradient norm, mean |g|, max |g|, weight norm, update.

A *parameterised layer* is a module that owns parameters directly (``module.parameters(recurse=False)``);
its statistics pool every parameter it owns (weight and bias together):

- ``grad_norm``     ``sqrt(sum_p ||g_p||_2^2)``
- ``grad_abs_mean`` ``sum_p ||g_p||_1 / sum_p numel(p)``
- ``grad_abs_max``  ``max_p ||g_p||_inf``
- ``weight_norm``   ``sqrt(sum_p ||w_p||_2^2)``
- ``update_ratio``  ``||w_after - w_before||_2 / ||w_before||_2`` over the layer's parameters (the
  optimizer step's relative size, Schneider, Dangel & Hennig 2021, "Cockpit", the "update size"
  instrument)

Every norm over all parameters is one ``torch._foreach_norm`` call (one kernel group per norm, not one
per tensor); the per-layer pooling is an ``index_add_`` / ``scatter_reduce_`` on a vector of P values.
Nothing leaves the device here.
"""

from __future__ import annotations

import math

import torch
from torch import nn

#: Column order of :meth:`ParamStats.grads` (3) + :meth:`ParamStats.weights` (2).
PARAM_METRICS: tuple[str, ...] = ("grad_norm", "grad_abs_mean", "grad_abs_max", "weight_norm", "update_ratio")


class ParamStats:
    """The parameters of ``model`` grouped by owning module, with fused statistics over them."""

    def __init__(self, model: nn.Module, only: set[int] | None = None) -> None:
        layers: list[str] = []
        params: list[nn.Parameter] = []
        owner: list[int] = []
        seen: set[int] = set()
        for name, module in model.named_modules():
            own = [
                p
                for p in module.parameters(recurse=False)
                if id(p) not in seen and (only is None or id(p) in only)
            ]
            if not own:
                continue
            for p in own:
                seen.add(id(p))
                params.append(p)
                owner.append(len(layers))
            layers.append(name or "<root>")
        self.layers = layers
        self.params = params
        self._owner_list = owner
        dev = params[0].device if params else torch.device("cpu")
        self.device = dev
        self.owner = torch.tensor(owner, dtype=torch.long, device=dev)
        self.numel = torch.zeros(len(layers), dtype=torch.float64, device=dev).index_add_(
            0, self.owner, torch.tensor([float(p.numel()) for p in params], dtype=torch.float64, device=dev)
        )
        self._before: list[torch.Tensor] | None = None
        self._cache: dict[tuple[int, ...], tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def __len__(self) -> int:
        return len(self.layers)

    def _pool_sq(self, norms: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(len(self.layers), dtype=torch.float64, device=self.device)
        return out.index_add_(0, idx, norms.double().square())

    def grads(self, full: bool = True) -> torch.Tensor:
        """``[L, 4]`` float64: grad_norm, grad_abs_mean, grad_abs_max (NaN for a layer with no grad), and
        1.0 where the layer had a gradient (0.0 where not). ``full=False``: the norm only (one pass over
        the gradients instead of three), the other two NaN."""
        n = len(self.layers)
        f64 = torch.float64
        have = [(i, p.grad) for i, p in enumerate(self.params) if p.grad is not None]
        out = torch.full((n, 3), math.nan, dtype=f64, device=self.device)
        if not have:
            return torch.cat([out, torch.zeros((n, 1), dtype=f64, device=self.device)], 1)
        grads = [g for _, g in have]
        if any(g.is_sparse for g in grads):
            grads = [g.coalesce().values() if g.is_sparse else g for g in grads]
        key = tuple(i for i, _ in have)
        cached = self._cache.get(key)
        if cached is None:  # host-to-device index tensors only when the set of gradients changes
            idx = torch.tensor([self._owner_list[i] for i in key], dtype=torch.long, device=self.device)
            has = torch.zeros(n, dtype=torch.bool, device=self.device)
            has[idx] = True
            numel = torch.zeros(n, dtype=f64, device=self.device).index_add_(
                0, idx, torch.tensor([float(g.numel()) for g in grads], dtype=f64, device=self.device)
            )
            self._cache = {key: (idx, has, numel)}
        else:
            idx, has, numel = cached
        l2 = torch.stack(torch._foreach_norm(grads, 2)).to(self.device)
        cols = [self._pool_sq(l2, idx).sqrt()]
        if full:
            l1 = torch.stack(torch._foreach_norm(grads, 1)).to(self.device)
            linf = torch.stack(torch._foreach_norm(grads, math.inf)).to(self.device)
            abs_sum = torch.zeros(n, dtype=f64, device=self.device).index_add_(0, idx, l1.double())
            mx = torch.full((n,), -math.inf, dtype=f64, device=self.device)
            cols += [abs_sum / numel, mx.scatter_reduce(0, idx, linf.double(), reduce="amax")]
        else:
            cols += [out[:, 1], out[:, 2]]
        res = torch.where(has[:, None], torch.stack(cols, dim=1), out)
        return torch.cat([res, has[:, None].double()], dim=1)

    def weight_norms(self) -> torch.Tensor:
        """``[L]`` float64 weight norms."""
        if not self.params:
            return torch.zeros(0, dtype=torch.float64, device=self.device)
        w = [p.detach() for p in self.params]
        return self._pool_sq(torch.stack(torch._foreach_norm(w, 2)).to(self.device), self.owner).sqrt()

    # -- update ratio: snapshot before the optimizer step, compare after ------------------------
    def snapshot(self) -> None:
        """Copy the current weights into persistent buffers (allocated once)."""
        w = [p.detach() for p in self.params]
        if self._before is None or any(
            b.shape != p.shape or b.dtype != p.dtype or b.device != p.device for b, p in zip(self._before, w)
        ):
            self._before = [p.clone() for p in w]
        else:
            torch._foreach_copy_(self._before, w)

    @property
    def has_snapshot(self) -> bool:
        return self._before is not None

    def updates(self, weight_norm_before: torch.Tensor | None = None) -> torch.Tensor:
        """``[L]`` float64 ``||w - w_snapshot|| / ||w_snapshot||``; NaN without a snapshot.

        The snapshot buffers are consumed (overwritten by the difference); call :meth:`snapshot` again.
        """
        n = len(self.layers)
        if self._before is None or not self.params:
            return torch.full((n,), math.nan, dtype=torch.float64, device=self.device)
        before = self._before
        if weight_norm_before is None:
            weight_norm_before = self._pool_sq(
                torch.stack(torch._foreach_norm(before, 2)).to(self.device), self.owner
            ).sqrt()
        torch._foreach_sub_(before, [p.detach() for p in self.params])
        diff = self._pool_sq(torch.stack(torch._foreach_norm(before, 2)).to(self.device), self.owner).sqrt()
        return diff / weight_norm_before

    def release(self) -> None:
        self._before = None
