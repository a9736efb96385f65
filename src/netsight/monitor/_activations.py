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
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch
from torch import nn

from ..capture import HandleList, Hooks
from ..capture._hooks import in_backward
from ._histograms import LogBins, sample_view

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
#: Longest CPU float32 vector whose sum of squares is a ``torch.dot`` (see ``ActivationTap._sum_sq``)
_DOT_MAX = 1 << 14
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
class TapHost:
    """One step of activation statistics on the host (``[La, ...]`` indexed like the tap's layers).

    ``act``: ``[La, 5]`` float64 ``n, mean, M2, zeros, saturated`` (n = 0: the layer did not run);
    ``delta_sq``: ``[La]`` ``sum ||∂L/∂a||^2`` over the calls (NaN: no gradient reached it);
    ``fwd_bad``/``bwd_bad``: the forward (backward) sequence number of the first non-finite output
    (gradient), ``inf`` when all were finite; ``fwd_names``/``bwd_names`` map sequence numbers to paths.
    """

    act: np.ndarray
    delta_sq: np.ndarray
    fwd_bad: float
    bwd_bad: float
    fwd_names: list[str]
    bwd_names: list[str]


@dataclass(frozen=True)
class TapLayout:
    """Where each per-call value sits in a step's raw vector, and how to pool them (host side)."""

    layers: int
    idx: np.ndarray  # [C] layer of each statistics call
    n: np.ndarray  # [C] elements per call
    z_pos: np.ndarray  # calls (positions in idx) that counted non-zeros
    sat_pos: np.ndarray  # calls that counted saturated outputs
    fwd_seq: np.ndarray  # [C] forward sequence number of each call
    probe_seq: np.ndarray  # [Q] forward sequence number of each finiteness probe
    g_idx: np.ndarray  # [G] layer of each output gradient, in backward order
    fwd_names: list[str]
    bwd_names: list[str]

    @property
    def size(self) -> int:
        return int(
            2 * self.idx.size + self.z_pos.size + self.sat_pos.size + self.probe_seq.size + self.g_idx.size
        )

    def finish(self, raw: np.ndarray) -> TapHost:
        """Pool the raw per-call sums ``[s (C), q (C), z, sat, probes, g]`` into per-layer statistics."""
        la = self.layers
        c = self.idx.shape[0]
        raw = raw.astype(np.float64, copy=False)
        tot, sq = raw[:c], raw[c : 2 * c]
        off = 2 * c
        nz = raw[off : off + self.z_pos.shape[0]]
        off += self.z_pos.shape[0]
        sat_counts = raw[off : off + self.sat_pos.shape[0]]
        off += self.sat_pos.shape[0]
        probes = raw[off : off + self.probe_seq.shape[0]]
        off += self.probe_seq.shape[0]
        g = raw[off : off + self.g_idx.shape[0]]
        with np.errstate(all="ignore"):
            n = self.n
            mean = tot / n
            m2 = np.maximum(sq - tot * mean, 0.0)
            extra = np.zeros((c, 2))
            extra[:, 0] = np.nan
            extra[self.z_pos, 0] = n[self.z_pos] - nz
            extra[self.sat_pos, 1] = sat_counts
            act = combine_moments(self.idx, la, n, mean, m2, sums=extra)
            bad = ~np.isfinite(tot + sq)
            fwd_bad = min(
                float(self.fwd_seq[bad].min()) if bad.any() else math.inf,
                float(self.probe_seq[~np.isfinite(probes)].min())
                if (~np.isfinite(probes)).any()
                else math.inf,
            )
            delta_sq = np.full(la, np.nan)
            if g.shape[0]:
                got = np.bincount(self.g_idx, minlength=la) > 0
                delta_sq[got] = np.bincount(self.g_idx, weights=g, minlength=la)[got]
            gbad = np.flatnonzero(~np.isfinite(g))
            bwd_bad = float(gbad[0]) if gbad.size else math.inf
        return TapHost(act, delta_sq, fwd_bad, bwd_bad, self.fwd_names, self.bwd_names)


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
        self._scratch: torch.Tensor | None = None
        self._hbuf: torch.Tensor | None = None
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
            self._scratch = self._hbuf = None

    def _reset(self) -> None:
        self._seen: dict[int, tuple[weakref.ref[torch.Tensor], int]] = {}
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
        self._h_used = 0

    # -- hooks ----------------------------------------------------------------------------------
    def _on_forward(self, i: int, module: nn.Module, inputs: Any, output: Any) -> None:
        if not torch.is_grad_enabled() or in_backward():  # (a checkpointed segment's recomputation)
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
            self._q.append(self._sum_sq(v))
            alive = None
            if self.zeros[i]:
                nz = torch.sign(v, out=self._buffer(v))
                if not self.relu[i]:
                    nz.abs_()
                self._z_idx.append(len(self._idx) - 1)
                dims = unit_dims(v) if self.relu[i] else ()
                if dims:  # a ReLU's output is >= 0: sign is 1 where non-zero, so the non-zeros per unit
                    # give both the count and which units fired (no separate amax pass over the output)
                    per_unit = nz.sum(dim=dims, dtype=torch.float32)
                    alive = per_unit != 0  # (NaN counts as alive, as amax(...) != 0 did)
                    self._z.append(per_unit.sum())
                else:
                    self._z.append(nz.sum(dtype=torch.float32))
            self._fwd_seq.append(len(self._fwd_names))
            self._fwd_names.append(name)
            bounds = self.sat[i]
            if bounds is not None:
                lo, hi = bounds
                mid, half = (hi + lo) / 2, (hi - lo) / 2
                # |v - mid| >= half - tol  <=>  sign(...) + 1 > 0: counted as 1 (ties included)
                d = torch.sub(v, mid, out=self._buffer(v)).abs_().sub_(half - self.sat_eps * (hi - lo))
                self._sat_idx.append(len(self._idx) - 1)
                self._sat.append(torch.sign(d).add_(1).sign_().sum(dtype=torch.float32))
            if self.relu[i] and v.dim() >= 1:
                if alive is None:
                    dims = unit_dims(v)
                    alive = (v.amax(dim=dims) if dims else v) != 0
                acc = self._alive.get(i)
                if acc is None or acc.shape != alive.shape:
                    if acc is None:
                        self._alive[i] = alive.clone()
                else:
                    acc.logical_or_(alive)
            if self.heavy and self.bins is not None:
                sample, scale = self._sample(v)
                self._h_idx.append(i)
                self._h.append(sample)
                self._h_scale.append(scale)
        self._seen[id(x)] = (weakref.ref(x), x._version)
        if self.delta and x.requires_grad:
            self._tensor_handles.add(x.register_hook(partial(self._on_grad, i)))  # type: ignore[no-untyped-call]

    def _already_checked(self, x: torch.Tensor) -> bool:
        """Whether ``x`` (or the tensor it is a full view of, as ``flatten`` gives) was summed this step
        and has not been written in place since: a container returning its last child's output, or a
        flatten of a pooled map, needs no second finiteness pass."""
        for t in (x, x._base):
            if t is None:
                continue
            seen = self._seen.get(id(t))
            if seen is not None and seen[0]() is t and seen[1] == t._version and t.numel() == x.numel():
                return True
        return False

    def _sample(self, v: torch.Tensor) -> tuple[torch.Tensor, float]:
        """A float32 copy of a strided sample of ``v``, written into one buffer kept across steps (not
        one small allocation per module and step); past the buffer's end, a fresh copy."""
        view, scale = sample_view(v, self.hist_sample)
        k = view.numel()
        used = self._h_used
        buf = self._hbuf
        if buf is None or buf.device != view.device:
            per = self.hist_sample if self.hist_sample is not None else 0
            buf = self._hbuf = torch.empty(len(self.layers) * per, dtype=torch.float32, device=view.device)
        if used + k > buf.numel():
            return view.to(torch.float32, copy=True), scale
        out = buf[used : used + k]
        out.copy_(view)
        self._h_used = used + k
        return out, scale

    def _sum_sq(self, v: torch.Tensor) -> torch.Tensor:
        """``Σ v²`` as a float32 scalar. ``torch.dot`` on a CPU accumulates float32 with an error that grows
        with the length (measured on ReLU outputs against float64: 5.8e-6 relative at 65,536 elements,
        1.5e-4 at 2^20), so above :data:`_DOT_MAX` elements the squares go through the scratch buffer and
        a pairwise ``sum`` (~1e-7 at any length)."""
        flat = v.reshape(-1)
        if v.dtype != torch.float32:
            return torch.mul(flat, flat).sum(dtype=torch.float32)
        if flat.numel() > _DOT_MAX and flat.device.type == "cpu":
            return torch.mul(flat, flat, out=self._buffer(flat)).sum()
        return torch.dot(flat, flat)

    def _buffer(self, v: torch.Tensor) -> torch.Tensor:
        """A scratch tensor shaped like ``v``, from one buffer kept across steps: the element-wise
        temporaries of the statistics allocate nothing (fresh multi-megabyte allocations are returned
        to the system and faulted in again, which also slows the backward pass that follows)."""
        if v.device.type != "cpu":  # accelerators' caching allocators reuse blocks already
            return torch.empty_like(v)
        n = v.numel()
        buf = self._scratch
        if buf is None or buf.numel() < n or buf.dtype != v.dtype:
            buf = self._scratch = torch.empty(n, dtype=v.dtype)
        return buf[:n].view(v.shape)

    def _on_grad(self, i: int, grad: torch.Tensor) -> None:
        with torch.no_grad():
            self._g_idx.append(i)
            self._g.append(self._sum_sq(grad.detach()))
            self._bwd_names.append(self.layers[i])

    def _on_probe(self, name: str, module: nn.Module, inputs: Any, output: Any) -> None:
        if not torch.is_grad_enabled():
            return
        x = primary_output(output)
        if x is None or x.numel() == 0:
            return
        if name not in self.shapes:
            self.shapes[name] = tuple(x.shape)
        if self._already_checked(x):
            self._fwd_names.append(name)  # its place in forward order still counts (the module tree)
            return
        with torch.no_grad():
            self._probe.append(x.detach().sum(dtype=torch.float32))
        self._seen[id(x)] = (weakref.ref(x), x._version)
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

    def take(
        self, device: torch.device
    ) -> tuple[torch.Tensor, TapLayout, tuple[list[torch.Tensor], list[float], list[int]] | None]:
        """This step's raw per-call sums (one stacked float32 vector on ``device``), where they sit, and
        the activation samples for histograms ``(samples, count scales, layer index)`` or ``None``; then
        forget them for the next step."""
        scalars = self._s + self._q + self._z + self._sat + self._probe + self._g
        raw = (
            torch.stack([t.to(device, torch.float32) for t in scalars])
            if scalars
            else torch.zeros(0, device=device)
        )
        i64 = np.int64
        layout = TapLayout(
            layers=len(self.layers),
            idx=np.asarray(self._idx, dtype=i64),
            n=np.asarray(self._n, dtype=np.float64),
            z_pos=np.asarray(self._z_idx, dtype=i64),
            sat_pos=np.asarray(self._sat_idx, dtype=i64),
            fwd_seq=np.asarray(self._fwd_seq, dtype=np.float64),
            probe_seq=np.asarray(self._probe_seq, dtype=np.float64),
            g_idx=np.asarray(self._g_idx, dtype=i64),
            fwd_names=list(self._fwd_names),
            bwd_names=list(self._bwd_names),
        )
        samples = (self._h, self._h_scale, self._h_idx) if self._h and self.bins is not None else None
        self._tensor_handles.remove()
        self._reset()
        return raw, layout, samples


def combine_moments(
    idx: np.ndarray, groups: int, n: np.ndarray, mean: np.ndarray, m2: np.ndarray, *, sums: np.ndarray
) -> np.ndarray:
    """Pool parts ``(n_i, mean_i, M2_i, extra sums)`` into groups: ``[groups, 3 + extra]`` float64.

    Chan, Golub & LeVeque's parallel formula: ``mean = Σ n_i mean_i / n``,
    ``M2 = Σ M2_i + Σ n_i (mean_i - mean)^2``; ``extra`` columns are summed. Empty groups get
    ``n = 0`` and NaN moments.
    """
    out = np.zeros((groups, 3 + sums.shape[1]))
    if idx.shape[0] == 0:
        out[:, 1:3] = np.nan
        return out
    with np.errstate(all="ignore"):
        live = n > 0
        tot = np.bincount(idx, weights=n, minlength=groups)
        gm = np.bincount(idx, weights=np.where(live, n * mean, 0.0), minlength=groups) / tot
        dev = np.where(live, m2 + n * np.square(mean - gm[idx]), 0.0)
        gm2 = np.bincount(idx, weights=dev, minlength=groups)
        out[:, 0] = tot
        out[:, 1] = gm
        out[:, 2] = np.where(tot > 0, gm2, np.nan)
        for j in range(sums.shape[1]):
            out[:, 3 + j] = np.bincount(idx, weights=sums[:, j], minlength=groups)
    return out
