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

On the device, each statistic is one fused call over all parameters (``torch._foreach_norm`` for the
L2 and L1 norms, ``torch._foreach_max`` for the largest |g|) giving one value per parameter; the few
per-parameter values travel to the host with the rest of the step and are pooled by layer there
(:meth:`ParamStats.pool_grads`, :meth:`ParamStats.pool_norms`), which costs microseconds in numpy
against tens of small kernel launches on the device.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

#: The parameter statistics, in the monitor's column order.
PARAM_METRICS: tuple[str, ...] = ("grad_norm", "grad_abs_mean", "grad_abs_max", "weight_norm", "update_ratio")


#: On a CPU, tensors above this many elements get their L2 norm from a pairwise sum of squares:
#: ``torch._foreach_norm`` (like ``torch.linalg.vector_norm``) accumulates float32 there with a relative
#: error of 1.2e-5 at 1 M elements, 3.8e-5 at 2.4 M and 8.6e-5 at 4 M (measured against float64), where
#: ``(t * t).sum()`` stays within 1e-6. Below it the fused call is exact to ~1e-6 and cheaper per tensor.
_PAIRWISE_ABOVE = 1 << 20


def _l2(tensors: list[torch.Tensor], dtype: torch.dtype | None) -> torch.Tensor:
    """``[k]`` float32 L2 norms, accumulated in ``dtype`` (:func:`_norm_dtype` of the parameters)."""
    return torch.stack(torch._foreach_norm(tensors, 2, dtype=dtype)).float()


def _norm_dtype(params: list[nn.Parameter]) -> torch.dtype | None:
    """float32 when some parameters are bfloat16 or float16 (a norm in their own dtype would be rounded
    to 3 significant digits, or overflow) and none is wider; ``None`` (each tensor's own dtype: float32
    alone takes the plain call, CUDA's fused kernel) otherwise. Decided once per model, not per step;
    gradients, snapshots and weights share their parameters' dtypes."""
    sizes = {p.dtype.itemsize for p in params} or {4}
    return torch.float32 if min(sizes) < 4 and max(sizes) <= 4 else None


def _sum(t: torch.Tensor) -> torch.Tensor:
    """``t.sum()`` accumulated in float32 at least."""
    return t.sum(dtype=torch.float32 if t.dtype.itemsize < 4 else None)


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
        self._norm = _norm_dtype(params)  # the dtype every L2 norm accumulates in
        self._owner_list = owner
        self.owner = np.asarray(owner, dtype=np.int64)
        self.device = params[0].device if params else torch.device("cpu")
        self.numel = np.bincount(
            self.owner, weights=np.array([float(p.numel()) for p in params]), minlength=len(layers)
        )
        self._before: list[torch.Tensor] | None = None
        self._scratch: torch.Tensor | None = None
        self._keys: dict[tuple[int, ...], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self.layers)

    # -- on the device: one value per parameter ---------------------------------------------------
    def grads(self) -> tuple[list[int], list[torch.Tensor]]:
        """``(indices, gradients)`` of the parameters that have a gradient this step: ``.grad`` set and
        ``requires_grad`` (a frozen parameter's ``.grad`` is stale, or zeros after
        ``zero_grad(set_to_none=False)``, not a gradient); sparse gradients as their coalesced values."""
        key: list[int] = []
        grads: list[torch.Tensor] = []
        for i, p in enumerate(self.params):
            g = p.grad
            if g is not None and p.requires_grad:
                key.append(i)
                grads.append(g.coalesce().values() if g.is_sparse else g)
        return key, grads

    def grad_raw(self, full: bool = True) -> tuple[tuple[int, ...], torch.Tensor] | None:
        """``(indices of the parameters that have a gradient, [k, 3] float32 L2, L1, L∞ norms)``
        (``full=False``: ``[k, 1]``, the L2 norm only), or ``None`` when no parameter has a gradient.
        Norms and sums of bfloat16 and float16 gradients are accumulated in float32."""
        key, grads = self.grads()
        grads = [g if g.numel() else g.new_zeros(1) for g in grads]
        if not grads:
            return None
        if not full:  # the every-step norm: one fused kernel (float32 accumulation, ~1e-5 relative
            # error on tensors of millions of elements; the full steps below are exact to ~1e-7)
            return tuple(key), self._l2(grads)[:, None]
        # L1 as a sum of |g| (pairwise summation: ~1e-7 relative error, where _foreach_norm(ord=1)
        # accumulates naively, 3e-4 on a ResNet's largest tensors, and is 3x slower on a CPU)
        if self._small(grads):
            l2 = self._l2(grads)
            l1 = torch.stack([_sum(a) for a in torch._foreach_abs(grads)])
            hi = torch.stack(torch._foreach_max(grads))
            lo = torch.stack(torch._foreach_max(torch._foreach_neg(grads)))
        else:  # large tensors: |g| into one reused buffer (then squared in place), one min/max pass
            sums = []
            for g in grads:
                a = self._abs(g)
                sums.append(torch.stack([_sum(a), _sum(a.square_())]))
            both = torch.stack(sums)
            l1, l2 = both[:, 0], both[:, 1].sqrt()
            mm = [torch.aminmax(g) for g in grads]
            hi = torch.stack([m[1] for m in mm])
            lo = -torch.stack([m[0] for m in mm])
        return tuple(key), torch.stack([l2, l1, torch.maximum(hi, lo)], dim=1).float()

    def _l2(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        """``[k]`` float32 L2 norms: one fused call, except float32 tensors of more than
        :data:`_PAIRWISE_ABOVE` elements on a CPU, squared into the reused buffer and summed pairwise."""
        if self._norm is not None or not tensors or tensors[0].device.type != "cpu":
            return _l2(tensors, self._norm)  # (accelerators' fused kernel reduces as a tree already)

        def big(t: torch.Tensor) -> bool:
            return t.numel() > _PAIRWISE_ABOVE and t.dtype == torch.float32

        small = [t for t in tensors if not big(t)]
        if len(small) == len(tensors):
            return _l2(tensors, None)
        fused = iter(torch._foreach_norm(small, 2) if small else [])
        norms = [self._pairwise_l2(t) if big(t) else next(fused) for t in tensors]
        return torch.stack(norms).float()

    def _pairwise_l2(self, t: torch.Tensor) -> torch.Tensor:
        """The L2 norm of ``t`` from its squares in the reused buffer, summed pairwise by ``sum``."""
        flat = t.reshape(-1)
        return torch.mul(flat, flat, out=self._buffer(flat.numel(), flat.dtype, flat.device)).sum().sqrt()

    def _buffer(self, n: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """``n`` elements of one scratch buffer kept across steps (sized for the largest parameter)."""
        buf = self._scratch
        if buf is None or buf.numel() < n or buf.dtype != dtype or buf.device != device:
            size = max(n, *(p.numel() for p in self.params))
            buf = self._scratch = torch.empty(size, dtype=dtype, device=device)
        return buf[:n]

    def _abs(self, g: torch.Tensor) -> torch.Tensor:
        """``|g|`` flattened into the reused buffer, in float32 at least: squared in place next, and a
        float16 square underflows below |g| ~ 2e-4 (typical gradients) and overflows above 256."""
        dtype = torch.float32 if g.dtype.itemsize < 4 else g.dtype
        buf = self._buffer(g.numel(), dtype, g.device)
        if dtype != g.dtype:  # (abs cannot write another dtype: cast first)
            return buf.copy_(g.reshape(-1)).abs_()
        return torch.abs(g.reshape(-1), out=buf)

    @staticmethod
    def _small(grads: list[torch.Tensor]) -> bool:
        return sum(g.numel() for g in grads) <= 1 << 20

    def weight_raw(self) -> torch.Tensor:
        """``[P]`` float32 L2 norm of every parameter."""
        if not self.params:
            return torch.zeros(0, device=self.device)
        return self._l2([p.detach() for p in self.params])

    # -- update ratio: snapshot before the optimizer step, compare after ------------------------
    def snapshot(self) -> None:
        """Copy the current weights into persistent buffers (allocated once)."""
        w = [p.detach() for p in self.params]
        if not w:  # a model without parameters: nothing to compare
            return
        if self._before is None or any(
            b.shape != p.shape or b.dtype != p.dtype or b.device != p.device for b, p in zip(self._before, w)
        ):
            self._before = [p.clone() for p in w]
        else:
            torch._foreach_copy_(self._before, w)

    @property
    def has_snapshot(self) -> bool:
        return self._before is not None

    def update_raw(self) -> torch.Tensor | None:
        """``[P]`` float32 ``||w - w_snapshot||`` per parameter, or ``None`` without a snapshot.

        The snapshot buffers are consumed (overwritten by the difference); call :meth:`snapshot` again.
        """
        if self._before is None or not self.params:
            return None
        torch._foreach_sub_(self._before, [p.detach() for p in self.params])
        return self._l2(self._before)

    def release(self) -> None:
        self._before = None
        self._scratch = None

    # -- on the host: pooled by layer -----------------------------------------------------------
    def _key(self, key: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        cached = self._keys.get(key)
        if cached is None:
            owner = self.owner[list(key)]
            n = len(self.layers)
            has = np.bincount(owner, minlength=n) > 0
            numel = np.bincount(
                owner, weights=np.array([float(self.params[i].numel()) for i in key]), minlength=n
            )
            if len(self._keys) > 8:
                self._keys.clear()
            cached = self._keys[key] = (owner, has, numel)
        return cached

    def pool_grads(self, key: tuple[int, ...], raw: np.ndarray) -> np.ndarray:
        """``[L, 4]`` float64: grad_norm, grad_abs_mean, grad_abs_max (NaN where not measured or no
        gradient), and 1.0 where the layer had a gradient, from :meth:`grad_raw`'s values."""
        n = len(self.layers)
        out = np.full((n, 4), np.nan)
        out[:, 3] = 0.0
        if not key:
            return out
        owner, has, numel = self._key(key)
        raw = raw.astype(np.float64, copy=False)
        out[has, 0] = np.sqrt(np.bincount(owner, weights=np.square(raw[:, 0]), minlength=n)[has])
        if raw.shape[1] == 3:
            out[has, 1] = np.bincount(owner, weights=raw[:, 1], minlength=n)[has] / numel[has]
            mx = np.full(n, -np.inf)
            with np.errstate(invalid="ignore"):  # NaN gradients give NaN, as they should
                np.maximum.at(mx, owner, raw[:, 2])
            out[has, 2] = mx[has]
        out[has, 3] = 1.0
        return out

    def pool_norms(self, raw: np.ndarray) -> np.ndarray:
        """``[L]`` float64 ``sqrt(Σ_p raw_p²)`` per layer, from one value per parameter."""
        sq = np.bincount(self.owner, weights=np.square(raw.astype(np.float64)), minlength=len(self.layers))
        return np.sqrt(sq)
