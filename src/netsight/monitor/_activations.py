"""Activation statistics and the error signal δ = ∂L/∂a, taken by forward and tensor hooks.

The hooks belong to a :class:`netsight.capture.Hooks` session (the capture core's one owner of hooks
and patches); the tensor hooks on each step's outputs sit in a :class:`netsight.capture.HandleList`
emptied at every collection, so nothing accumulates and nothing outlives :meth:`ActivationTap.close`.

Per call of a selected module, on the device and without a host read (each a single vectorised pass;
``torch.var_mean`` and ``count_nonzero`` are 100x slower on a CPU):

- ``sum`` and ``sum of squares`` (float32 cascade sums, combined in float64) give the mean and
  ``M2 = Σx² - (Σx)²/n``; the relative error of the standard deviation is about 1e-7 · (1 + (mean/std)²);
- for modules without parameters of their own (activations), ``sum(|sign(x)|)`` counts the non-zeros;
- saturating modules (sigmoid, tanh, hardtanh, ...) also count outputs within ``eps · (hi - lo)`` of
  either bound; ReLU-family modules keep, per unit (channel), whether it was ever non-zero (for the
  dead-unit rule);
- with gradients enabled, a tensor hook on the output takes ``Σ (∂L/∂a)²`` during backward;
- on heavy steps, a strided sample of the output is histogrammed in fixed log-spaced bins.

Every other module (containers included) gets a one-kernel finiteness probe (``sum``), so the first
module *in forward order* whose output became non-finite can be named even when its own code (a
``torch.log`` in its ``forward``) produced the NaN.

Forward passes run with gradients disabled (validation under ``torch.no_grad()``, a probe batch) are
not recorded. Several calls of one module in a step (a shared ReLU, gradient accumulation) are pooled
exactly with Chan et al.'s parallel formula for mean and M2 (Chan, Golub & LeVeque 1979).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import nn

from ..capture import HandleList, Hooks
from ._histograms import LogBins, histograms_of_samples, sample_flat

# module type name -> (low, high) bound of its output; hardtanh-like ones read their own bounds
_SATURATING: dict[str, tuple[float, float]] = {
    "Sigmoid": (0.0, 1.0),
    "Hardsigmoid": (0.0, 1.0),
    "Tanh": (-1.0, 1.0),
    "Softsign": (-1.0, 1.0),
    "Hardtanh": (-1.0, 1.0),
    "ReLU6": (0.0, 6.0),
    "Tanhshrink": (-math.inf, math.inf),
}
#: ReLU-family modules whose units can die (output exactly zero for every input)
_RELU_FAMILY = ("ReLU", "ReLU6")


def saturation_bounds(module: nn.Module) -> tuple[float, float] | None:
    """The output bounds of a saturating activation module, or ``None``."""
    for cls in type(module).__mro__:
        bounds = _SATURATING.get(cls.__name__)
        if bounds is not None:
            if hasattr(module, "min_val") and hasattr(module, "max_val"):
                return float(module.min_val), float(module.max_val)  # type: ignore[arg-type]
            return bounds if math.isfinite(bounds[0]) else None
    return None


def is_relu_family(module: nn.Module) -> bool:
    return any(cls.__name__ in _RELU_FAMILY for cls in type(module).__mro__)


def primary_output(output: Any) -> torch.Tensor | None:
    """The first floating-point tensor of a module's output (tensor, tuple, list, dict, ModelOutput)."""
    if isinstance(output, torch.Tensor):
        return output if output.is_floating_point() else None
    items: Sequence[Any]
    if isinstance(output, Mapping):
        items = list(output.values())
    elif isinstance(output, (tuple, list)):
        items = output
    else:
        return None
    for o in items:
        t = primary_output(o)
        if t is not None:
            return t
    return None


def default_layers(root: nn.Module) -> list[tuple[str, nn.Module]]:
    """The modules whose outputs the monitor summarises by default: leaf modules that own parameters
    (convolutions, linear layers, norms), activation functions (``torch.nn.modules.activation``), and
    leaf modules defined outside ``torch.nn``. Pooling, flattening, dropout and identity are left out:
    their outputs repeat what the statistics of their neighbours already say."""
    out = []
    for name, m in root.named_modules():
        if not name or any(True for _ in m.children()):
            continue
        mod = type(m).__module__
        owns = any(True for _ in m.parameters(recurse=False))
        if owns or mod == "torch.nn.modules.activation" or not mod.startswith("torch.nn"):
            out.append((name, m))
    return out or [(n or "", m) for n, m in root.named_modules() if not any(True for _ in m.children())]


def unit_dims(x: torch.Tensor) -> tuple[int, ...]:
    """Dimensions reduced to get one value per unit: all but channels (dim 1), or features (last dim)
    of a ``[B, T, F]`` sequence output."""
    if x.dim() <= 1:
        return ()
    if x.dim() == 3:
        return (0, 1)
    return tuple(d for d in range(x.dim()) if d != 1)


@dataclass(frozen=True)
class TapStep:
    """What the tap hands over for one step, all on the device (``[La, ...]`` indexed like ``layers``).

    ``act``: ``[La, 5]`` float64 ``n, mean, M2, zeros, saturated`` (n = 0: the layer did not run);
    ``delta_sq``: ``[La]`` ``sum ||∂L/∂a||^2`` over the calls (NaN: no gradient reached it);
    ``fwd_bad``/``bwd_bad``: ``[1]`` the forward (backward) sequence number of the first non-finite
    output (gradient), ``inf`` when all were finite; ``fwd_names``/``bwd_names`` map sequence numbers to
    module paths; ``hist``: ``[La, E+1]`` activation histogram counts, or ``None``.
    """

    act: torch.Tensor
    delta_sq: torch.Tensor
    fwd_bad: torch.Tensor
    bwd_bad: torch.Tensor
    fwd_names: list[str]
    bwd_names: list[str]
    hist: torch.Tensor | None


class ActivationTap:
    """Hooks the selected modules of ``root`` and accumulates one step of statistics on the device."""

    def __init__(
        self,
        root: nn.Module,
        selected: list[tuple[str, nn.Module]],
        *,
        probe_others: bool = True,
        delta: bool = True,
        sat_eps: float = 0.01,
        hist_edges: torch.Tensor | None = None,
        hist_sample: int | None = 4096,
    ) -> None:
        self.root = root
        self.layers = [n or "<root>" for n, _ in selected]
        self._modules = [m for _, m in selected]
        chosen = {id(m) for m in self._modules}
        self._others = (
            [(n or "<root>", m) for n, m in root.named_modules() if id(m) not in chosen]
            if probe_others
            else []
        )
        self.delta = delta
        self.sat = [saturation_bounds(m) for m in self._modules]
        self.sat_eps = float(sat_eps)
        self.relu = [is_relu_family(m) for m in self._modules]
        self.relu_layers = [i for i, r in enumerate(self.relu) if r]
        # zeros are counted where they mean something: modules without parameters of their own
        # (activations and the like); a convolution's or a linear layer's output is never exactly 0
        self.zeros = [not any(True for _ in m.parameters(recurse=False)) for m in self._modules]
        self.bins: LogBins | None = LogBins(hist_edges) if hist_edges is not None else None
        self.hist_sample = hist_sample
        self.heavy = False
        self.shapes: dict[str, tuple[int, ...]] = {}
        self._hooks: Hooks | None = None
        self._tensor_handles = HandleList()
        self._alive: dict[int, torch.Tensor] = {}
        self._reset()

    # -- lifecycle ------------------------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        return self._hooks is not None

    def open(self) -> None:
        """Attach the hooks (for the steps that collect activation statistics)."""
        if self._hooks is not None:
            return
        hooks = Hooks(self.root, restore_state=False)  # spans training: the user's flags are theirs
        hooks.__enter__()
        try:
            for i, m in enumerate(self._modules):
                hooks.forward(m, partial(self._on_forward, i))
            for name, m in self._others:
                hooks.forward(m, partial(self._on_probe, name))
        except BaseException:
            hooks.remove()
            raise
        self._hooks = hooks

    def close(self, *, final: bool = False) -> None:
        """Remove every hook (dead-unit flags are kept for the window unless ``final``)."""
        hooks, self._hooks = self._hooks, None
        try:
            self._tensor_handles.remove()
        finally:
            if hooks is not None:
                hooks.remove()
        self._reset()
        if final:
            self._alive.clear()

    def _reset(self) -> None:
        self._idx: list[int] = []
        self._n: list[float] = []
        self._s: list[torch.Tensor] = []
        self._q: list[torch.Tensor] = []
        self._z_idx: list[int] = []
        self._z: list[torch.Tensor] = []
        self._sat_idx: list[int] = []
        self._sat: list[torch.Tensor] = []
        self._fwd_seq: list[int] = []  # sequence number of each stats call
        self._probe_seq: list[int] = []
        self._probe: list[torch.Tensor] = []
        self._fwd_names: list[str] = []
        self._g_idx: list[int] = []
        self._g: list[torch.Tensor] = []
        self._bwd_names: list[str] = []
        self._h_idx: list[int] = []
        self._h: list[torch.Tensor] = []
        self._h_scale: list[float] = []

    # -- hooks ----------------------------------------------------------------------------------
    def _on_forward(self, i: int, module: nn.Module, inputs: Any, output: Any) -> None:
        if not torch.is_grad_enabled():
            return
        x = primary_output(output)
        if x is None:
            return
        name = self.layers[i]
        if name not in self.shapes:
            self.shapes[name] = tuple(x.shape)
        with torch.no_grad():
            v = x.detach()
            n = v.numel()
            if n == 0:
                return
            if not v.is_contiguous():
                v = v.contiguous()
            self._idx.append(i)
            self._n.append(float(n))
            self._s.append(v.sum(dtype=torch.float32))
            flat = v.reshape(-1)
            f32 = torch.float32
            self._q.append(torch.dot(flat, flat) if v.dtype == f32 else torch.mul(v, v).sum(dtype=f32))
            if self.zeros[i]:
                nz = torch.sign(v) if self.relu[i] else torch.sign(v).abs_()
                self._z_idx.append(len(self._idx) - 1)
                self._z.append(nz.sum(dtype=torch.float32))
            self._fwd_seq.append(len(self._fwd_names))
            self._fwd_names.append(name)
            bounds = self.sat[i]
            if bounds is not None:
                lo, hi = bounds
                mid, half = (hi + lo) / 2, (hi - lo) / 2
                # |v - mid| >= half - tol  <=>  sign(...) + 1 > 0: counted as 1 (ties included)
                d = (v - mid).abs_().sub_(half - self.sat_eps * (hi - lo))
                self._sat_idx.append(len(self._idx) - 1)
                self._sat.append(torch.sign(d).add_(1).sign_().sum(dtype=torch.float32))
            if self.relu[i] and v.dim() >= 1:
                dims = unit_dims(v)
                alive = (v.amax(dim=dims) if dims else v) != 0
                acc = self._alive.get(i)
                if acc is None or acc.shape != alive.shape:
                    if acc is None:
                        self._alive[i] = alive.clone()
                else:
                    acc.logical_or_(alive)
            if self.heavy and self.bins is not None:
                sample, scale = sample_flat(v, self.hist_sample)
                self._h_idx.append(i)
                self._h.append(sample)
                self._h_scale.append(scale)
        if self.delta and x.requires_grad:
            self._tensor_handles.add(x.register_hook(partial(self._on_grad, i)))  # type: ignore[no-untyped-call]

    def _on_grad(self, i: int, grad: torch.Tensor) -> None:
        with torch.no_grad():
            self._g_idx.append(i)
            g = grad.detach().reshape(-1)
            self._g.append(
                torch.dot(g, g) if g.dtype == torch.float32 else torch.mul(g, g).sum(dtype=torch.float32)
            )
            self._bwd_names.append(self.layers[i])

    def _on_probe(self, name: str, module: nn.Module, inputs: Any, output: Any) -> None:
        if not torch.is_grad_enabled():
            return
        x = primary_output(output)
        if x is None or x.numel() == 0:
            return
        if name not in self.shapes:
            self.shapes[name] = tuple(x.shape)
        with torch.no_grad():
            self._probe.append(x.detach().sum(dtype=torch.float32))
        self._probe_seq.append(len(self._fwd_names))
        self._fwd_names.append(name)

    # -- collection -----------------------------------------------------------------------------
    def dead_fractions(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """``([La] dead fraction, NaN for non-ReLU or not yet seen; flat alive vector)`` for the window."""
        out = torch.full((len(self.layers),), math.nan, dtype=torch.float64, device=device)
        parts = [self._alive[i] for i in self.relu_layers if i in self._alive]
        flat = torch.cat([p.reshape(-1).float() for p in parts]) if parts else torch.zeros(0, device=device)
        return out, flat

    def fill_dead(self, out: torch.Tensor, flat_alive: torch.Tensor) -> torch.Tensor:
        """Write ``1 - mean(alive)`` per ReLU layer from a (possibly all-reduced) flat alive vector."""
        off = 0
        for i in self.relu_layers:
            acc = self._alive.get(i)
            if acc is None:
                continue
            k = acc.numel()
            if k:
                out[i] = 1.0 - flat_alive[off : off + k].double().mean()
            off += k
        return out

    def reset_window(self) -> None:
        for acc in self._alive.values():
            acc.zero_()

    def take(self, device: torch.device) -> TapStep:
        """This step's statistics (few batched ops), then forget them for the next step."""
        la = len(self.layers)
        f64 = torch.float64
        act = torch.zeros((la, 5), dtype=f64, device=device)
        fwd_bad = torch.full((1,), math.inf, dtype=f64, device=device)
        if self._idx:
            idx = torch.tensor(self._idx, dtype=torch.long, device=device)
            n = torch.tensor(self._n, dtype=f64, device=device)
            tot = torch.stack(self._s).to(device, f64)
            sq = torch.stack(self._q).to(device, f64)
            mean = tot / n
            m2 = (sq - tot * mean).clamp_min(0.0)
            zeros = torch.full_like(n, math.nan)
            if self._z:
                zi = torch.tensor(self._z_idx, dtype=torch.long, device=device)
                zeros[zi] = n[zi] - torch.stack(self._z).to(device, f64)
            sat = torch.zeros_like(n)
            if self._sat:
                si = torch.tensor(self._sat_idx, dtype=torch.long, device=device)
                sat[si] = torch.stack(self._sat).to(device, f64)
            act = combine_moments(idx, la, n, mean, m2, sums=torch.stack([zeros, sat], dim=1))
            seq = torch.tensor(self._fwd_seq, dtype=f64, device=device)
            bad = ~torch.isfinite(tot + sq)
            fwd_bad = torch.minimum(fwd_bad, torch.where(bad, seq, math.inf).amin().reshape(1))
        if self._probe:
            seq = torch.tensor(self._probe_seq, dtype=f64, device=device)
            bad = ~torch.isfinite(torch.stack(self._probe).to(device))
            fwd_bad = torch.minimum(fwd_bad, torch.where(bad, seq, math.inf).amin().reshape(1))
        delta_sq = torch.full((la,), math.nan, dtype=f64, device=device)
        bwd_bad = torch.full((1,), math.inf, dtype=f64, device=device)
        if self._g:
            gi = torch.tensor(self._g_idx, dtype=torch.long, device=device)
            g = torch.stack(self._g).to(device, f64)
            got = torch.zeros(la, dtype=torch.bool, device=device)
            got[gi] = True
            sq = torch.zeros(la, dtype=f64, device=device).index_add_(0, gi, g)
            delta_sq = torch.where(got, sq, delta_sq)
            seq = torch.arange(len(self._g), dtype=f64, device=device)
            bwd_bad = torch.where(~torch.isfinite(g), seq, math.inf).amin().reshape(1)
        hist = None
        if self._h and self.bins is not None:
            hist = histograms_of_samples(self._h, self._h_scale, self._h_idx, la, self.bins)
        step = TapStep(act, delta_sq, fwd_bad, bwd_bad, list(self._fwd_names), list(self._bwd_names), hist)
        self._tensor_handles.remove()
        self._reset()
        return step


def combine_moments(
    idx: torch.Tensor,
    groups: int,
    n: torch.Tensor,
    mean: torch.Tensor,
    m2: torch.Tensor,
    *,
    sums: torch.Tensor,
) -> torch.Tensor:
    """Pool parts ``(n_i, mean_i, M2_i, extra sums)`` into groups: ``[groups, 3 + extra]`` float64.

    Chan, Golub & LeVeque's parallel formula: ``mean = Σ n_i mean_i / n``,
    ``M2 = Σ M2_i + Σ n_i (mean_i - mean)^2``; ``extra`` columns are summed. Empty groups get
    ``n = 0`` and NaN moments.
    """
    f64 = torch.float64
    tot = torch.zeros(groups, dtype=f64, device=n.device).index_add_(0, idx, n)
    s = torch.zeros(groups, dtype=f64, device=n.device).index_add_(0, idx, torch.where(n > 0, n * mean, 0.0))
    gm = s / tot
    dev = torch.where(n > 0, m2 + n * (mean - gm[idx]).square(), 0.0)
    gm2 = torch.zeros(groups, dtype=f64, device=n.device).index_add_(0, idx, dev)
    gm2 = torch.where(tot > 0, gm2, math.nan)
    extra = torch.zeros((groups, sums.shape[1]), dtype=f64, device=n.device).index_add_(0, idx, sums)
    return torch.cat([tot[:, None], gm[:, None], gm2[:, None], extra], dim=1)
