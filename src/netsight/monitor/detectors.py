"""Online diagnosis rules: each reads one collected step of per-layer statistics and says what broke.

Every rule is a small class with its thresholds as constructor arguments (documented below, all
configurable through ``ns.watch(detectors={"vanishing": {"ratio": 1e-4}, "saturation": False})``).
A rule fires once when its condition starts (after ``patience`` consecutive collected steps where it
applies) and re-arms when the condition has been clear for ``patience`` steps, so a persistent
problem gives one alert per layer, not one per step.

Rules (registry names):

``vanishing``
    (a) relative: a layer's RMS gradient ``grad_norm / sqrt(numel)`` is below ``ratio`` (1e-3) times the
    median RMS gradient of all parameterised layers — far below the rest of the network, as the
    early layers of a deep sigmoid MLP are; (b) falling: its gradient norm is below ``1 / fall``
    (1/100) of its own maximum over the last ``window`` (50) steps. Both for ``patience`` (3) steps.
``exploding``
    (a) jump: a layer's gradient norm exceeds ``jump`` (10) times its median over the last ``window``
    (50) steps (after ``min_history`` (3) steps); (b) growth: the median of its last 5 values is
    ``growth`` (100) times the median of the first 5 in the window. Non-finite norms go to ``nan``.
``dead_units``
    the fraction of a ReLU-family layer's units (channels, or features) that output exactly zero for
    every sample of every step in a window (the monitor's ``dead_window``: 20 steps that collect full
    statistics) is at least ``fraction`` (0.5).
``nan``
    the first step where any output, output gradient or parameter gradient is NaN/Inf; names the first
    module in forward order whose output became non-finite (else the first in backward order whose
    output gradient did, else the first layer with a non-finite parameter gradient).
``saturation``
    a saturating activation (sigmoid, tanh, hardtanh, ...) has at least ``fraction`` (0.5) of its
    outputs within 1% of its range from a bound, for ``patience`` (10) consecutive steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..errors import ArgumentError, UnknownNameError, closest

__all__ = [
    "RULES",
    "DeadUnits",
    "Detector",
    "Exploding",
    "Finding",
    "NonFinite",
    "Saturation",
    "StepView",
    "Vanishing",
    "make_detectors",
]


@dataclass(frozen=True)
class Finding:
    """What a rule found: ``layer`` (module path or ``None``), the offending ``value``, and words."""

    rule: str
    layer: str | None
    value: float
    message: str
    severity: str = "warning"


@dataclass(frozen=True)
class StepView:
    """One collected step as the rules see it (host values).

    ``values[layer_index, metric_index]`` with NaN for missing; ``numel`` parameters per layer (0 for a
    layer without parameters); ``fwd_origin``/``bwd_origin``: first module whose output (output
    gradient) was non-finite, in forward (backward) order, or ``None``.
    """

    step: int
    layers: list[str]
    metrics: tuple[str, ...]
    values: np.ndarray
    numel: np.ndarray
    has_grad: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    fwd_origin: str | None = None
    bwd_origin: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def col(self, metric: str) -> np.ndarray:
        return np.asarray(self.values[:, self.metrics.index(metric)], dtype=np.float64)


class _Latch:
    """Per-layer "fire once per episode" state with patience on both edges, vectorised over layers.

    For each key that applies this step: while the condition holds, ``on`` counts up (``off`` resets)
    and the key fires once ``on`` reaches ``patience``; while it is clear, ``off`` counts up and the key
    re-arms once ``off`` reaches ``patience``. Keys that do not apply keep their counters.
    """

    def __init__(self, patience: int) -> None:
        self.patience = max(1, int(patience))
        self.keys: list[str] | None = None
        self.on = np.zeros(0, dtype=np.int64)
        self.off = np.zeros(0, dtype=np.int64)
        self.fired = np.zeros(0, dtype=bool)

    def _for(self, keys: list[str]) -> None:
        if self.keys is not keys and self.keys != keys:
            old = dict(zip(self.keys or [], range(len(self.keys or []))))
            pos = np.array([old.get(k, -1) for k in keys], dtype=np.int64)
            keep = pos >= 0
            on, off, fired = (
                np.zeros(len(keys), np.int64),
                np.zeros(len(keys), np.int64),
                np.zeros(len(keys), bool),
            )
            on[keep], off[keep], fired[keep] = self.on[pos[keep]], self.off[pos[keep]], self.fired[pos[keep]]
            self.on, self.off, self.fired = on, off, fired
        self.keys = keys

    def update_many(self, keys: list[str], applies: np.ndarray, cond: np.ndarray) -> np.ndarray:
        """Advance every key where ``applies``; the indices of the keys that fire now."""
        self._for(keys)
        hot = applies & cond
        cold = applies & ~cond
        self.off[hot] = 0
        self.on[hot] += 1
        self.on[cold] = 0
        self.off[cold] += 1
        fire = hot & ~self.fired & (self.on >= self.patience)
        self.fired |= fire
        self.fired &= ~(cold & (self.off >= self.patience))
        return np.flatnonzero(fire)

    def update_steps(self, keys: list[str], applies: np.ndarray, cond: np.ndarray) -> list[np.ndarray]:
        """:meth:`update_many` over consecutive steps (``[K, L]`` masks); the fired indices per step.
        When no condition holds and nothing has fired (a healthy run), one vectorised update."""
        self._for(keys)
        hot = applies & cond
        if not hot.any() and not self.fired.any():
            any_applies = applies.any(axis=0)
            self.on[any_applies] = 0
            self.off += applies.sum(axis=0)
            return [np.zeros(0, dtype=np.int64)] * applies.shape[0]
        return [self.update_many(keys, applies[j], cond[j]) for j in range(applies.shape[0])]

    def update(self, key: str, cond: bool) -> bool:
        """One key (a rule about the whole model)."""
        return bool(self.update_many([key], np.ones(1, bool), np.array([cond])).size)


@runtime_checkable
class Detector(Protocol):
    """What a rule is: a ``name`` and ``__call__(view) -> list[Finding]``."""

    name: str

    def __call__(self, view: StepView) -> list[Finding]: ...


class _History:
    """The last ``window`` values of one metric per layer, in a preallocated ring."""

    def __init__(self, window: int) -> None:
        self.window = max(2, int(window))
        self.layers: list[str] | None = None
        self.buf = np.zeros((0, 0))
        self.count = 0

    def check(self, layers: list[str]) -> None:
        """Start afresh when the layers change."""
        if self.layers is not layers and self.layers != layers:
            self.layers = layers
            self.buf = np.zeros((self.window, len(layers)))
            self.count = 0

    def __len__(self) -> int:
        return min(self.count, self.window)

    def rows(self) -> np.ndarray:
        """Every remembered row, in ring order (for order-free statistics: median, maximum)."""
        return self.buf[: len(self)]

    def _span(self, start: int, k: int) -> np.ndarray:
        return self.buf[np.arange(start, start + k) % self.window]

    def oldest(self, k: int) -> np.ndarray:
        n = min(k, len(self))
        return self._span(self.count - len(self), n)

    def newest(self, k: int) -> np.ndarray:
        n = min(k, len(self))
        return self._span(self.count - n, n)

    def push(self, row: np.ndarray) -> None:
        self.buf[self.count % self.window] = row
        self.count += 1

    def ordered(self) -> np.ndarray:
        """Every remembered row, oldest first."""
        return self.newest(self.window)

    def extend(self, rows: np.ndarray) -> None:
        for row in rows[-self.window :]:
            self.push(row)


def _median_rows(a: np.ndarray) -> np.ndarray:
    """Column medians of ``a`` ignoring non-finite values (NaN where a column has none); fast for the
    few rows the rules use, without numpy's masked-array path."""
    k = a.shape[0]
    if k == 0:
        return np.full(a.shape[1:], np.nan)
    finite = np.isfinite(a)
    full = finite.all(axis=0)
    if full.all():
        b = np.sort(a, axis=0)
        med: np.ndarray = (b[(k - 1) // 2] + b[k // 2]) / 2
        return med
    out = np.full(a.shape[1], np.nan)
    if full.any():  # columns without gaps (layers with parameters): the plain median
        b = np.sort(a[:, full], axis=0)
        out[full] = (b[(k - 1) // 2] + b[k // 2]) / 2
    mixed = finite.any(axis=0) & ~full
    if mixed.any():
        f = finite[:, mixed]
        b = np.sort(np.where(f, a[:, mixed], np.inf), axis=0)
        n = f.sum(axis=0)
        lo = np.take_along_axis(b, ((n - 1) // 2)[None, :], axis=0)[0]
        hi = np.take_along_axis(b, (n // 2)[None, :], axis=0)[0]
        out[mixed] = (lo + hi) / 2
    return out


def _median_last(a: np.ndarray) -> np.ndarray:
    """Medians along the last axis ignoring non-finite values (NaN where none is finite)."""
    finite = np.isfinite(a)
    if finite.all():
        b = np.sort(a, axis=-1)
        m = a.shape[-1]
        med: np.ndarray = (b[..., (m - 1) // 2] + b[..., m // 2]) / 2
        return med
    n = finite.sum(axis=-1)
    b = np.sort(np.where(finite, a, np.inf), axis=-1)
    lo = np.take_along_axis(b, np.clip((n - 1) // 2, 0, None)[..., None], axis=-1)[..., 0]
    hi = np.take_along_axis(b, np.clip(n // 2, 0, None)[..., None], axis=-1)[..., 0]
    with np.errstate(all="ignore"):
        out: np.ndarray = np.where(n > 0, (lo + hi) / 2, np.nan)
    return out


def _positive(name: str, value: float) -> float:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ArgumentError(f"{name}: expected a positive number, got {value!r}.")
    return float(value)


class Vanishing:
    """Gradients far below the rest of the network, or falling ≥ ``fall``x over a window."""

    name = "vanishing"

    def __init__(self, ratio: float = 1e-3, fall: float = 100.0, window: int = 50, patience: int = 3) -> None:
        self.ratio = _positive("ratio", ratio)
        self.fall = _positive("fall", fall)
        self.hist = _History(window)
        self.latch = _Latch(patience)

    def __call__(self, view: StepView) -> list[Finding]:
        g = view.col("grad_norm")
        self.hist.check(view.layers)
        past = self.hist.rows()
        with np.errstate(all="ignore"):
            if len(past) >= 10:
                peak = np.where(np.isfinite(past), past, -np.inf).max(axis=0)
                fell = (peak > 0) & np.isfinite(peak) & (g < peak / self.fall)
            else:
                peak = np.full(g.shape, np.nan)
                fell = np.zeros(g.shape, dtype=bool)
        self.hist.push(g)
        has = (view.numel > 0) & np.isfinite(g)
        out: list[Finding] = []
        if not has.any():
            return out
        with np.errstate(all="ignore"):
            rms = np.where(has, g / np.sqrt(np.maximum(view.numel, 1)), np.nan)
            ref = float(_median_rows(rms[has][:, None])[0])
            low = (rms < self.ratio * ref) if ref > 0 else np.zeros(g.shape, dtype=bool)
        fired = self.latch.update_many(view.layers, has, low | fell)
        out.extend(self._finding(view, int(i), (g, rms, peak), ref, low=bool(low[i])) for i in fired)
        return out

    def many(self, views: Sequence[StepView]) -> list[list[Finding]]:
        """:meth:`__call__` over consecutive steps, the window statistics vectorised."""
        layers = views[0].layers
        if len(views) > self.hist.window or any(v.layers is not layers and v.layers != layers for v in views):
            return [self(v) for v in views]
        self.hist.check(layers)
        g = np.stack([v.col("grad_norm") for v in views])  # [K, L]
        k = g.shape[0]
        past = self.hist.ordered()
        h, w = past.shape[0], self.hist.window
        with np.errstate(all="ignore"):
            # the maximum over the w steps before each step: suffix maxima of the history and prefix
            # maxima of the batch
            e_past = np.where(np.isfinite(past), past, -np.inf)
            suf = np.maximum.accumulate(e_past[::-1], axis=0)[::-1] if h else np.zeros((0, g.shape[1]))
            e_new = np.where(np.isfinite(g), g, -np.inf)
            pre = np.vstack([np.full((1, g.shape[1]), -np.inf), np.maximum.accumulate(e_new, axis=0)[:-1]])
            peak = pre.copy()
            for j in range(k):
                start = h + j - w  # the oldest history row still in step j's window
                if h > 0 and start < h:
                    peak[j] = np.maximum(peak[j], suf[max(start, 0)])
            counts = np.minimum(h + np.arange(k), w)
            fell = (counts[:, None] >= 10) & (peak > 0) & np.isfinite(peak) & (g < peak / self.fall)
            peak[counts < 10] = np.nan
            numel = views[0].numel
            has = (numel > 0)[None, :] & np.isfinite(g)
            rms = np.where(has, g / np.sqrt(np.maximum(numel, 1))[None, :], np.nan)
            ref = _median_rows(rms.T)
            low = (ref[:, None] > 0) & (rms < self.ratio * ref[:, None])
        self.hist.extend(g)
        # a step without any gradient leaves the rule's state alone (as __call__ returns early)
        live = has.any(axis=1)
        fired_all = self.latch.update_steps(layers, has[live], (low | fell)[live])
        out: list[list[Finding]] = [[] for _ in views]
        for j, fired in zip(np.flatnonzero(live).tolist(), fired_all):
            rows = (g[j], rms[j], peak[j])
            out[j] = [
                self._finding(views[j], int(i), rows, float(ref[j]), low=bool(low[j, i])) for i in fired
            ]
        return out

    def _finding(
        self,
        view: StepView,
        i: int,
        rows: tuple[np.ndarray, np.ndarray, np.ndarray],
        ref: float,
        *,
        low: bool,
    ) -> Finding:
        g, rms, peak = rows
        name = view.layers[i]
        if low:
            msg = (
                f"vanishing gradient in {name!r} at step {view.step}: RMS gradient {rms[i]:.3g} is "
                f"{rms[i] / ref:.2g}x the network's median {ref:.3g} (rule: < {self.ratio:g}x)"
            )
        else:
            msg = (
                f"vanishing gradient in {name!r} at step {view.step}: gradient norm {g[i]:.3g} fell "
                f"{peak[i] / max(g[i], 1e-300):.3g}x below its recent maximum {peak[i]:.3g} "
                f"(rule: ≥ {self.fall:g}x)"
            )
        return Finding(self.name, name, float(g[i]), msg)


class Exploding:
    """A gradient norm jumping ≥ ``jump``x its recent median, or growing ≥ ``growth``x over a window."""

    name = "exploding"

    def __init__(
        self, jump: float = 10.0, growth: float = 100.0, window: int = 50, min_history: int = 3
    ) -> None:
        self.jump = _positive("jump", jump)
        self.growth = _positive("growth", growth)
        self.min_history = int(min_history)
        self.hist = _History(window)
        self.latch = _Latch(1)

    def __call__(self, view: StepView) -> list[Finding]:
        g = view.col("grad_norm")
        hist = self.hist
        hist.check(view.layers)
        out: list[Finding] = []
        if len(hist) < self.min_history:
            hist.push(g)
            return out
        past = hist.rows()
        valid = np.isfinite(past).sum(axis=0)
        with np.errstate(all="ignore"):
            med = _median_rows(past)
            jumped = (valid >= self.min_history) & (med > 0) & (g > self.jump * med)
            first = _median_rows(hist.oldest(5))
            last = _median_rows(np.vstack([hist.newest(4), g[None, :]]))
            grew = (first > 0) & (last > self.growth * first)
        hist.push(g)
        fired = self.latch.update_many(view.layers, np.isfinite(g), jumped | grew)
        out.extend(self._finding(view, int(i), g, (med, first, last), jumped=bool(jumped[i])) for i in fired)
        return out

    def many(self, views: Sequence[StepView]) -> list[list[Finding]]:
        """:meth:`__call__` over consecutive steps once the window is full, the window medians of all
        the steps in one sort."""
        hist = self.hist
        layers = views[0].layers
        hist.check(layers)
        k, w = len(views), hist.window
        if len(hist) < w or k > w or any(v.layers is not layers and v.layers != layers for v in views):
            return [self(v) for v in views]
        g = np.stack([v.col("grad_norm") for v in views])  # [K, L]
        ext = np.vstack([hist.ordered(), g])  # [w + K, L], oldest first
        cols = np.flatnonzero(np.isfinite(ext).any(axis=0))  # layers that ever had a finite norm
        n_l = g.shape[1]
        med = np.full((k, n_l), np.nan)
        first = np.full((k, n_l), np.nan)
        last = np.full((k, n_l), np.nan)
        valid = np.zeros((k, n_l), dtype=np.int64)
        if cols.size:
            sub = ext[:, cols]
            win = np.lib.stride_tricks.sliding_window_view(sub, w, axis=0)[:k]  # [K, C, w]: the w before
            five = np.lib.stride_tricks.sliding_window_view(sub, 5, axis=0)  # [w + K - 4, C, 5]
            med[:, cols] = _median_last(win)
            valid[:, cols] = np.isfinite(win).sum(axis=-1)
            first[:, cols] = _median_last(five[:k])  # the oldest 5 of each step's window
            last[:, cols] = _median_last(five[w - 4 : w - 4 + k])  # 4 before each step and the step
        with np.errstate(all="ignore"):
            jumped = (valid >= self.min_history) & (med > 0) & (g > self.jump * med)
            grew = (first > 0) & (last > self.growth * first)
        hist.extend(g)
        out: list[list[Finding]] = []
        for j, fired in enumerate(self.latch.update_steps(layers, np.isfinite(g), jumped | grew)):
            rows = (med[j], first[j], last[j])
            out.append(
                [self._finding(views[j], int(i), g[j], rows, jumped=bool(jumped[j, i])) for i in fired]
            )
        return out

    def _finding(
        self,
        view: StepView,
        i: int,
        g: np.ndarray,
        rows: tuple[np.ndarray, np.ndarray, np.ndarray],
        *,
        jumped: bool,
    ) -> Finding:
        med, first, last = rows
        name = view.layers[i]
        if jumped:
            msg = (
                f"exploding gradient in {name!r} at step {view.step}: gradient norm {g[i]:.3g} is "
                f"{g[i] / med[i]:.3g}x its recent median {med[i]:.3g} (rule: > {self.jump:g}x)"
            )
        else:
            msg = (
                f"exploding gradient in {name!r} at step {view.step}: gradient norm grew "
                f"{last[i] / first[i]:.3g}x over the window (rule: > {self.growth:g}x)"
            )
        return Finding(self.name, name, float(g[i]), msg)


class DeadUnits:
    """ReLU-family layers with at least ``fraction`` of units zero for every sample over the window."""

    name = "dead_units"

    def __init__(self, fraction: float = 0.5) -> None:
        if not 0 < fraction <= 1:
            raise ArgumentError(f"fraction: expected a number in (0, 1], got {fraction!r}.")
        self.fraction = float(fraction)
        self.latch = _Latch(1)

    def __call__(self, view: StepView) -> list[Finding]:
        d = view.col("dead_frac")
        ok = np.isfinite(d)
        if not ok.any():
            return []
        out: list[Finding] = []
        with np.errstate(invalid="ignore"):
            cond = d >= self.fraction
        for i in self.latch.update_many(view.layers, ok, cond):
            name = view.layers[i]
            msg = (
                f"dead units in {name!r} at step {view.step}: {d[i]:.0%} of its units output zero for "
                f"every sample over the window (rule: ≥ {self.fraction:.0%})"
            )
            out.append(Finding(self.name, name, float(d[i]), msg))
        return out


class NonFinite:
    """The first step with a NaN/Inf output, output gradient or parameter gradient, and its origin."""

    name = "nan"

    def __init__(self) -> None:
        self.latch = _Latch(1)

    def __call__(self, view: StepView) -> list[Finding]:
        g = view.col("grad_norm")
        has = view.has_grad if view.has_grad.shape == g.shape else np.zeros(g.shape, dtype=bool)
        quiet = view.fwd_origin is None and view.bwd_origin is None and bool(np.isfinite(g[has]).all())
        if quiet and not self.latch.fired.any():
            return []  # nothing to report and nothing armed: the latch has no state to advance
        bad_grad = [view.layers[i] for i in np.flatnonzero(has & ~np.isfinite(g))]
        cond = view.fwd_origin is not None or view.bwd_origin is not None or bool(bad_grad)
        if not self.latch.update("model", cond):
            return []
        mean = view.col("act_mean")
        if view.fwd_origin is not None:
            layer = view.fwd_origin
            where = "output"
            order = "forward"
        elif view.bwd_origin is not None:
            layer = view.bwd_origin
            where = "output gradient"
            order = "backward"
        else:
            layer = bad_grad[-1]  # parameter gradients appear in backward order: the last layer first
            where = "parameter gradient"
            order = "backward"
        value = math.nan
        if layer in view.layers:
            j = view.layers.index(layer)
            value = float(mean[j]) if where == "output" else float(g[j])
        msg = (
            f"non-finite values at step {view.step}: the {where} of {layer!r} is the first to become "
            f"NaN/Inf in {order} order"
        )
        return [Finding(self.name, layer, value, msg, severity="error")]


class Saturation:
    """Saturating activations with at least ``fraction`` of outputs at a bound for ``patience`` steps."""

    name = "saturation"

    def __init__(self, fraction: float = 0.5, patience: int = 10) -> None:
        if not 0 < fraction <= 1:
            raise ArgumentError(f"fraction: expected a number in (0, 1], got {fraction!r}.")
        self.fraction = float(fraction)
        self.latch = _Latch(patience)

    def __call__(self, view: StepView) -> list[Finding]:
        s = view.col("act_sat_frac")
        ok = np.isfinite(s)
        if not ok.any():
            return []
        out: list[Finding] = []
        with np.errstate(invalid="ignore"):
            cond = s >= self.fraction
        for i in self.latch.update_many(view.layers, ok, cond):
            name = view.layers[i]
            msg = (
                f"saturation in {name!r} at step {view.step}: {s[i]:.0%} of its outputs are within 1% "
                f"of a bound for {self.latch.patience} steps (rule: ≥ {self.fraction:.0%})"
            )
            out.append(Finding(self.name, name, float(s[i]), msg))
        return out


RULES: dict[str, Callable[..., Detector]] = {
    "vanishing": Vanishing,
    "exploding": Exploding,
    "dead_units": DeadUnits,
    "nan": NonFinite,
    "saturation": Saturation,
}


def run_rules(rules: Sequence[Detector], views: Sequence[StepView]) -> list[list[Finding]]:
    """Every rule over consecutive steps, in order; a rule with a ``many(views)`` method judges them
    in one vectorised pass (same findings as one call per step), the others step by step."""
    found: list[list[Finding]] = [[] for _ in views]
    for rule in rules:
        many = getattr(rule, "many", None)
        results = many(views) if many is not None and len(views) > 1 else [rule(v) for v in views]
        for out, res in zip(found, results):
            out.extend(res)
    return found


def check_rule(name: str, argument: str) -> str:
    if name not in RULES:
        near = closest(name, RULES)
        hint = f" Did you mean {', '.join(repr(n) for n in near)}?" if near else ""
        raise UnknownNameError(f"{argument}: unknown rule {name!r}.{hint} Known: {', '.join(sorted(RULES))}.")
    return name


def make_detectors(spec: Mapping[str, Any] | None) -> list[Detector]:
    """Every rule with its defaults, overridden per rule by ``spec``.

    ``spec[name]`` is ``False`` (off), ``True``/``None`` (defaults), a dict of constructor arguments, or a
    :class:`Detector` instance.
    """
    spec = dict(spec or {})
    for name in spec:
        check_rule(str(name), "detectors")
    out: list[Detector] = []
    for name, factory in RULES.items():
        opt = spec.get(name, True)
        if opt is False:
            continue
        if isinstance(opt, Detector):
            out.append(opt)
        elif opt is True or opt is None:
            out.append(factory())
        elif isinstance(opt, Mapping):
            try:
                out.append(factory(**opt))
            except TypeError as exc:
                raise ArgumentError(
                    f"detectors[{name!r}]: {exc}. See netsight.monitor.detectors.{factory.__name__}."
                ) from exc
        else:
            raise ArgumentError(
                f"detectors[{name!r}]: expected False, True, a dict of options or a Detector, got {opt!r}."
            )
    return out
