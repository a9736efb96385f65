"""``ns.watch``: one line in the training loop for gradient flow, activation statistics and diagnosis.

Three tiers, so the default costs little (``docs/benchmarks.md``, "Monitor overhead"):

1. **every step** (written every ``every`` steps): each parameterised layer's gradient norm (one
   ``torch._foreach_norm`` over all gradients) and whether it is finite. The vanishing, exploding and
   NaN rules run on it. When a gradient is non-finite and activations were not being watched, the
   step's input (kept by reference) is replayed once through a capture of every module, with the RNG
   forked and buffers restored, to name the module where NaN/Inf first appeared in forward order.
2. **``stats`` steps** (every 10th by default, and every heavy step): everything in the table below;
   the activation hooks are attached only for these steps.
3. **``heavy`` steps** (logarithmic: dense early, sparse later): histograms of weights, gradients and
   activations, and activation maps of the ``probe`` batch.

============== ======================================================================================
metric          definition (per module path)
============== ======================================================================================
grad_norm       ``sqrt(Σ_p ||g_p||²)`` over the parameters the module owns
grad_abs_mean   ``Σ_p ||g_p||_1 / Σ_p numel(p)``
grad_abs_max    ``max_p ||g_p||_∞``
weight_norm     ``sqrt(Σ_p ||w_p||²)`` before the optimizer step
update_ratio    ``||w_after - w_before|| / ||w_before||`` across the optimizer step (without an
                optimizer: between consecutive ``mon.step()`` calls)
act_mean        mean of the output (pooled over every call of the module in the step)
act_std         sample standard deviation of the output (n - 1)
act_zero_frac   fraction of output elements exactly zero (modules without parameters of their own:
                activations; NaN for convolutions, linear layers, norms)
act_sat_frac    fraction of a saturating activation's outputs within ``sat_eps`` of its range from a
                bound (sigmoid, tanh, hardtanh, ReLU6, ...); NaN for other modules
delta_norm      ``||∂L/∂a||₂``, the error signal reaching the module's output (``sqrt`` of the sum of
                squares over calls)
dead_frac       at the end of each ``dead_window`` (counted in stats steps): the fraction of a
                ReLU-family module's units that were zero for every sample of the window; NaN otherwise
============== ======================================================================================

Everything a step produces is concatenated into one small float64 vector that reaches the host in one
transfer (on CUDA asynchronously). Per-parameter values are pooled by layer on the host (numpy on a
handful of numbers costs less than the device launches it replaces). The host side (pooling, the rules,
the store's queue) runs on batches of up to 8 steps (or 0.25 s): on a CPU after the 8th step, on CUDA
in the root module's forward hook, while the device computes the step just queued. So the rules and
``raise_on`` act up to 8 steps late, naming the right step; a non-finite step, ``mon.last``,
``mon.alerts``, ``mon.flush()`` and ``close()`` process what waits at once. The NaN check reads one
flag per step before the update (on CUDA a wait for the backward pass; ``nan_origin=False`` avoids it).
Histograms (weights, gradients, activations; fixed log-spaced bins) and activation maps of a fixed probe
batch are taken on the ``heavy`` schedule (logarithmic by default). Steps not written (``every > 1``)
stay in a ring buffer of ``ring`` steps that is written out when a rule fires, so the steps before a
problem are kept.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import math
import time
from collections import deque
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from ..capture import HandleList, Hooks, resolve, unwrap
from ..capture._selectors import Layers
from ..capture.reducers import log_edges
from ..errors import AlertError, ArgumentError, CaptureError, closest
from . import _distributed
from ._activations import ActivationTap, TapLayout, default_layers
from ._histograms import LogBins, histograms_of_samples, sample_many
from ._params import ParamStats
from .detectors import RULES, Detector, Finding, StepView, check_rule, make_detectors, run_rules
from .schedule import as_schedule

logger = logging.getLogger("netsight")

#: Column order of the per-layer matrix written to the store (``run.log_layers``).
METRICS: tuple[str, ...] = (
    "grad_norm",
    "grad_abs_mean",
    "grad_abs_max",
    "weight_norm",
    "update_ratio",
    "act_mean",
    "act_std",
    "act_zero_frac",
    "act_sat_frac",
    "delta_norm",
    "dead_frac",
)


def _to_host(t: torch.Tensor) -> tuple[torch.Tensor, Any]:
    """``(host copy, event)``: on CUDA an asynchronous copy and the event that marks its arrival
    (read later, without stalling the device); elsewhere the tensor itself and ``None``."""
    if t.device.type == "cuda":
        host = t.to("cpu", non_blocking=True)
        event = torch.cuda.Event()  # type: ignore[no-untyped-call]
        event.record()
        return host, event
    return t.cpu(), None


def _all_finite(norms: torch.Tensor) -> bool:
    """Whether every norm is finite: read in place on a CPU, one host read (a sync) on accelerators."""
    if norms.device.type == "cpu":
        return bool(np.isfinite(norms.numpy()).all())
    return math.isfinite(float(norms.sum()))


@dataclass(frozen=True)
class StepRecord:
    """One collected step on the host: what the ring buffer holds and what is written."""

    step: int
    values: np.ndarray  # [L, len(METRICS)] float64
    hists: dict[str, tuple[list[str], np.ndarray]]  # kind -> (layers, counts [l, E + 1])
    written: bool = False
    cols: int = len(METRICS)  # the first ``cols`` metrics were measured (1: a gradient-norm-only step)


class Monitor:
    """Watches a model while it trains; create it with :func:`watch`. Context manager; :meth:`close`
    removes every hook and leaves the model exactly as before."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        run: Any = None,
        *,
        layers: Layers = None,
        every: int = 1,
        stats: Any = 10,
        heavy: Any = "log",
        histograms: bool = True,
        hist_edges: torch.Tensor | None = None,
        hist_sample: int | None = 4096,
        activations: bool = True,
        delta: bool = True,
        update_ratio: bool = True,
        nan_origin: bool = True,
        probe: torch.Tensor | None = None,
        maps_layers: Layers = None,
        maps_k: int = 16,
        detectors: Mapping[str, Any] | None = None,
        dead_window: int = 20,
        sat_eps: float = 0.01,
        raise_on: str | Collection[str] | None = None,
        ring: int = 64,
        distributed: str = "reduce",
        start_step: int = 0,
        serve: bool | Mapping[str, Any] = False,
    ) -> None:
        self.model = model
        self.root = unwrap(model)
        if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
            raise ArgumentError(
                f"optimizer: expected a torch.optim.Optimizer, got {type(optimizer).__name__}. Pass the "
                "optimizer whose step() ends each training step, or None and call mon.step() yourself."
            )
        self.optimizer = optimizer
        self.every = as_schedule(every, "every")
        self.heavy = as_schedule(heavy, "heavy")
        self.stats = as_schedule(stats, "stats")
        if not isinstance(ring, int) or ring < 0:
            raise ArgumentError(f"ring: expected a non-negative int (steps kept), got {ring!r}.")
        if not isinstance(dead_window, int) or dead_window < 1:
            raise ArgumentError(f"dead_window: expected a positive int (steps), got {dead_window!r}.")
        if distributed not in ("reduce", "per_rank"):
            raise ArgumentError(
                f"distributed: expected 'reduce' (statistics pooled over ranks, rank 0 writes) or "
                f"'per_rank' (each rank writes its own), got {distributed!r}."
            )
        if not 0 <= sat_eps < 0.5:
            raise ArgumentError(f"sat_eps: expected a fraction in [0, 0.5), got {sat_eps!r}.")
        if isinstance(raise_on, str):
            raise_on = list(RULES) if raise_on == "all" else [raise_on]
        self.raise_on = frozenset(check_rule(r, "raise_on") for r in (raise_on or ()))
        self.detectors: list[Detector] = make_detectors(detectors)
        self.dead_window = dead_window
        self.ring: deque[StepRecord] = deque(maxlen=max(ring, 1))
        self._ring_on = ring > 0
        self.histograms = bool(histograms)
        self.edges = (hist_edges if hist_edges is not None else log_edges()).detach().double().cpu()
        self.bins = LogBins(self.edges)
        self.hist_sample = hist_sample
        self.update_ratio = bool(update_ratio)
        self.rank, self.world = _distributed.world()
        self.distributed = distributed
        self.writes = distributed == "per_rank" or self.rank == 0
        self.run = self._open_run(run)
        self._alerts: list[Any] = []
        self._last: StepRecord | None = None
        self.step_count = 0
        self.start_step = int(start_step)

        self.params = ParamStats(self.root)
        self.device = self.params.device
        selected = default_layers(self.root) if layers is None else resolve(self.root, layers)
        self.tap: ActivationTap | None = None
        if activations:
            self.tap = ActivationTap(
                self.root,
                selected,
                probe_others=nan_origin,
                delta=delta,
                sat_eps=sat_eps,
                hist_edges=self.edges if self.histograms else None,
                hist_sample=hist_sample,
            )
        order = [n or "<root>" for n, _ in self.root.named_modules()]
        wanted = set(self.params.layers) | set(self.tap.layers if self.tap else [])
        self.layers = [n for n in order if n in wanted]
        pos = {n: i for i, n in enumerate(self.layers)}
        self._p_rows = np.array([pos[n] for n in self.params.layers], dtype=np.int64)
        self._a_rows = np.array([pos[n] for n in (self.tap.layers if self.tap else [])], dtype=np.int64)
        self.numel = np.zeros(len(self.layers))
        self.numel[self._p_rows] = self.params.numel
        self._sat_rows = (
            np.array([pos[n] for n, b in zip(self.tap.layers, self.tap.sat) if b is not None], dtype=np.int64)
            if self.tap
            else np.zeros(0, dtype=np.int64)
        )
        self.probe = probe
        self.maps_k = maps_k
        self._maps_layers = maps_layers
        self._handles = HandleList()
        self._wn: torch.Tensor | None = None
        self._prev_wn: torch.Tensor | None = None
        self._psamples: list[tuple[str, int, list[torch.Tensor], list[float], list[int]]] = []
        self._pending: deque[tuple[dict[str, Any], torch.Tensor, Any]] = deque()
        self._tree_logged = False
        self._open = False
        self.nan_origin = bool(nan_origin)
        self._root_hooks: Hooks | None = None
        self._last_input: tuple[Any, Any] | None = None
        self._origin: str | None = None
        self._tapped_steps = 0
        self.server: Any = None
        if serve and self.writes:  # the writing rank serves; the others have no run
            self._serve(serve if isinstance(serve, Mapping) else {})
        try:
            self._start()
        except BaseException:
            if self.server is not None:
                self.server.stop()
            raise

    # -- setup ----------------------------------------------------------------------------------
    def _open_run(self, run: Any) -> Any:
        if run is None or not self.writes:
            return run if self.writes else None
        if isinstance(run, (str, Path)):
            from ..store import open_run

            self._own_run = True
            return open_run(run)
        for attr in ("log_layers", "log_alert"):
            if not callable(getattr(run, attr, None)):
                raise ArgumentError(
                    f"run: expected a run from ns.open_run(...) (or a store directory), got "
                    f"{type(run).__name__} without {attr}(). Pass run=ns.open_run('netsight-runs')."
                )
        return run

    _own_run = False

    def _start(self) -> None:
        try:
            self._arm_tap(self.start_step)
            if self.optimizer is not None:
                self._handles.add(self.optimizer.register_step_pre_hook(self._pre_hook))
                self._handles.add(self.optimizer.register_step_post_hook(self._post_hook))
            cuda = self.device.type == "cuda"
            if self.nan_origin or cuda:
                self._root_hooks = Hooks(self.root, restore_state=False)
                self._root_hooks.__enter__()
            if self.nan_origin and self._root_hooks is not None:
                # the latest input, by reference, so a non-finite step can be replayed to find the origin
                self._root_hooks.forward_pre(self.root, self._keep_input, with_kwargs=True)
            if cuda and self._root_hooks is not None:
                # host work while the device runs the forward and backward just queued, not in the gap
                # between steps where the device would wait for it
                self._root_hooks.forward(self.root, self._after_forward)
        except BaseException:
            self._remove_hooks()
            raise
        self._open = True

    def _serve(self, options: Mapping[str, Any]) -> None:
        directory = getattr(self.run, "store_dir", None)
        if directory is None:
            raise ArgumentError(
                "serve: True needs a run written to a store directory; pass run=ns.open_run('netsight-runs')."
            )
        try:
            from ..server import serve
        except ImportError as exc:
            raise ArgumentError(
                "serve: the dashboard is not available (netsight.server could not be imported: "
                f"{exc}). Install netsight[server], or start it later with `netsight serve {directory}`."
            ) from exc
        self.server = serve(directory, background=True, **options)
        logger.info("netsight dashboard at %s", getattr(self.server, "url", directory))

    # -- context --------------------------------------------------------------------------------
    def __enter__(self) -> Monitor:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None:
            self.close()
            return
        # the loop's own exception is the one to see: an alert found while closing is stored and
        # logged already, and must not replace it
        with contextlib.suppress(AlertError):
            self._close("failed")

    def _remove_hooks(self) -> None:
        try:
            self._handles.remove()
        finally:
            try:
                if self._root_hooks is not None:
                    self._root_hooks.remove()
            finally:
                self._root_hooks = None
                self._last_input = None
                if self.tap is not None:
                    self.tap.close(final=True)

    def close(self) -> None:
        """Write what is pending, remove every hook; the model is left exactly as before."""
        self._close(None)

    def _close(self, status: str | None) -> None:
        if not self._open:
            return
        self._open = False
        try:
            self._drain(all_pending=True)
        finally:
            self._remove_hooks()
            self.params.release()
            if self._own_run and self.run is not None:
                self.run.close(status=status)

    @property
    def closed(self) -> bool:
        return not self._open

    # -- the step -------------------------------------------------------------------------------
    def _pre_hook(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        self._before_update()

    def _post_hook(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        self._collect()

    def _full(self, step: int) -> bool:
        """Whether ``step`` collects everything (activations, weights, update) or gradient norms only."""
        return bool(self.stats(step)) or (self.histograms and bool(self.heavy(step)))

    def _arm_tap(self, step: int) -> None:
        """Attach the activation hooks for ``step`` if it collects them, detach them otherwise."""
        if self.tap is None:
            return
        if self._full(step):
            self.tap.heavy = self.histograms and bool(self.heavy(step))
            self.tap.open()
        elif self.tap.is_open:
            self.tap.close()

    def _after_forward(self, module: nn.Module, args: Any, output: Any) -> None:
        if torch.is_grad_enabled() and len(self._pending) > 1:
            self._drain(all_pending=False)

    def _keep_input(self, module: nn.Module, args: Any, kwargs: Any) -> None:
        if torch.is_grad_enabled():
            self._last_input = (args, kwargs)

    def _replay(self) -> str | None:
        """Run the latest input again (no gradients, same RNG, buffers restored) with a capture of every
        module, and name the first, in forward order, whose output holds NaN/Inf."""
        from ..capture import capture, preserved_state

        if self._last_input is None:
            return None
        args, kwargs = self._last_input
        devices = [self.device] if self.device.type == "cuda" else []
        with (
            preserved_state(self.root, buffers=True),
            torch.random.fork_rng(devices=devices),
            torch.no_grad(),
            capture(self.root, layers=lambda n, m: True, reduce="stats") as cap,
        ):
            out = self.root(*args, **kwargs)
        labels, table = cap.stacked("stats")
        if len(labels):
            bad = (table[:, 7] + table[:, 8] > 0).cpu()
            for label, flag in zip(labels, bad.tolist()):
                if flag:
                    return label.split("[", 1)[0]
        from ._activations import primary_output

        y = primary_output(out)
        if y is not None and not bool(torch.isfinite(y).all()):
            return "<root>"
        return None

    def _before_update(self) -> None:
        step = self.start_step + self.step_count
        full = self._full(step)
        if not full and not (self.tap is not None and self.tap.is_open):
            self._cheap_before()
            return
        with torch.no_grad():
            self._graw = self.params.grad_raw(full)
            self._wn = self.params.weight_raw() if full else None
            if full and self.update_ratio and self.optimizer is not None:
                self.params.snapshot()
            self._origin = None
            tapped = self.tap is not None and self.tap.is_open
            # one host read per step (a sync on accelerators); the replay runs only when it fires
            if (
                self.nan_origin
                and not tapped
                and self._graw is not None
                and not _all_finite(self._graw[1][:, 0])
            ):
                self._origin = self._replay()
            heavy = self.histograms and self.heavy(step)
            self._psamples = []
            if heavy:  # samples now (the update changes the weights); binned with the rest in _collect
                p = self.params
                gkey, grads = p.grads()
                for kind, tensors in (
                    ("weight", [(q.detach(), o) for q, o in zip(p.params, p._owner_list)]),
                    ("grad", [(g, p._owner_list[i]) for i, g in zip(gkey, grads)]),
                ):
                    samples, scales = sample_many([t for t, _ in tensors], self.hist_sample)
                    self._psamples.append((kind, len(p), samples, scales, [o for _, o in tensors]))

    def _cheap_before(self) -> None:
        """A gradient-norm-only step: one ``_foreach_norm`` and, for the NaN rule, one host read."""
        self._wn = None
        self._psamples = []
        self._origin = None
        with torch.no_grad():
            self._graw = self.params.grad_raw(full=False)
            if self.nan_origin and self._graw is not None and not _all_finite(self._graw[1]):
                self._origin = self._replay()

    _graw: tuple[tuple[int, ...], torch.Tensor] | None = None

    def _cheap_collect(self, step: int) -> None:
        raw = self._graw if self._graw is not None else self.params.grad_raw(full=False)
        self._graw = None
        key, norms = raw if raw is not None else ((), torch.zeros((0, 1)))
        meta: dict[str, Any] = {"step": step, "heavy": False, "cheap": key, "origin": self._origin}
        self._origin = None
        with torch.no_grad():
            host, event = _to_host(norms.detach().float())
            if self.optimizer is None and self.update_ratio and self._full(step + 1):
                self.params.snapshot()  # the next step's update is measured against these weights
                self._prev_wn = self.params.weight_raw()
            else:
                self._prev_wn = None
        self.step_count += 1
        self._arm_tap(self.start_step + self.step_count)
        self._queue(meta, host, event)

    def _manual(self, what: str, step: int | None) -> None:
        if not self._open:
            raise CaptureError(f"mon.{what}(): this monitor is closed; create a new one with ns.watch(...).")
        if self.optimizer is not None:
            raise ArgumentError(
                f"{what}: this monitor collects on optimizer.step() already (optimizer= was given); do not "
                f"call mon.{what}() as well, or watch without optimizer=."
            )
        if step is not None:
            self.start_step = int(step) - self.step_count

    def before_update(self, step: int | None = None) -> None:
        """Without an optimizer: read the gradients now, after ``backward`` and before the weights change
        (optional; trainer integrations call it from their "before optimizer step" hook, so a NaN
        gradient is traced back before the update spreads it into the weights). Then call :meth:`step`."""
        self._manual("before_update", step)
        self._wn_for_update = self._prev_wn
        self._before_update()
        self._pre_done = True

    def step(self, step: int | None = None) -> None:
        """Collect this step when watching without an optimizer (call after ``backward``, or after the
        update when :meth:`before_update` was called).

        ``step``: the step number to record (default: the monitor's own counter). The update ratio is
        measured between the weights at consecutive calls.
        """
        self._manual("step", step)
        if not self._pre_done:
            self._wn_for_update = self._prev_wn
            self._before_update()
        self._pre_done = False
        self._collect()

    _pre_done = False
    _wn_for_update: torch.Tensor | None = None

    def _collect(self) -> None:
        step = self.start_step + self.step_count
        heavy = self.heavy(step)
        full = self._full(step)
        if not full and not (self.tap is not None and self.tap.is_open):
            self._cheap_collect(step)
            return
        with torch.no_grad():
            dev = self.device
            graw = self._graw if self._graw is not None else self.params.grad_raw(full)
            key, gvals = graw if graw is not None else ((), torch.zeros((0, 3), device=dev))
            wn = self._wn
            upd = ref = None
            if full and self.update_ratio and (self.optimizer is not None or self._wn_for_update is not None):
                ref = wn if self.optimizer is not None else self._wn_for_update
                upd = self.params.update_raw() if ref is not None else None
            if self.optimizer is None and self.update_ratio and self._full(step + 1):
                self.params.snapshot()  # the next step's update is measured against these weights
                self._prev_wn = wn if wn is not None else self.params.weight_raw()
            else:
                self._prev_wn = None
            parts = [gvals.reshape(-1)]
            pmeta = {"gkey": key, "gcols": int(gvals.shape[1]), "wn": wn is not None, "upd": upd is not None}
            if wn is not None:
                parts.append(wn)
            if upd is not None and ref is not None:
                parts += [upd, ref]
            meta: dict[str, Any] = {"step": step, "heavy": heavy, "origin": self._origin, **pmeta}
            self._origin = None
            hist_blocks: list[tuple[str, int, torch.Tensor]] = []
            if self.tap is not None and self.tap.is_open:
                self._tapped_steps += 1
                raw, layout, act_samples = self.tap.take(dev)
                la = len(self.tap.layers)
                dead = torch.full((la,), math.nan, dtype=torch.float64, device=dev)
                if self._tapped_steps % self.dead_window == 0:
                    dead, flat = self.tap.dead_fractions(dev)
                    if self.world > 1 and self.distributed == "reduce":
                        flat = _distributed.all_reduce_max(flat)
                    dead = self.tap.fill_dead(dead, flat)
                    self.tap.reset_window()
                if self.world > 1 and self.distributed == "reduce":
                    act_hist = (
                        histograms_of_samples(*act_samples, la, self.bins)
                        if act_samples is not None
                        else None
                    )
                    host_tap = layout.finish(raw.double().cpu().numpy())
                    host_tap, act_hist = _distributed.reduce_tap(host_tap, act_hist, self.world, dev)
                    meta["tap"] = host_tap
                    if act_hist is not None:
                        hist_blocks.append(("activation", la, act_hist))
                else:
                    parts.append(raw)
                    meta["tap"] = layout
                    if act_samples is not None:
                        self._psamples.insert(0, ("activation", la, *act_samples))
                parts.append(dead)
                meta["la"] = la
                if not self._tree_logged:
                    meta["tree"] = True
                    self._tree_logged = True
            if self._psamples:  # every histogram of the step: one binning pass, one bincount
                kinds = self._psamples
                offsets = np.cumsum([0] + [rows for _, rows, *_ in kinds])
                counts = histograms_of_samples(
                    [t for k in kinds for t in k[2]],
                    [c for k in kinds for c in k[3]],
                    [int(o + off) for k, off in zip(kinds, offsets) for o in k[4]],
                    int(offsets[-1]),
                    self.bins,
                )
                hist_blocks += [(k[0], k[1], counts[off : off + k[1]]) for k, off in zip(kinds, offsets)]
            for kind, rows, block in hist_blocks:
                parts.append(block.reshape(-1).to(dev))
                meta.setdefault("hists", []).append((kind, rows))
            flat = torch.cat([p.to(dev, torch.float64) for p in parts])
            self._graw = self._wn = None
            self._psamples = []
            host, event = _to_host(flat)
        self.step_count += 1
        self._arm_tap(self.start_step + self.step_count)
        self._queue(meta, host, event, urgent=True)
        if heavy and self.probe is not None and self.run is not None:
            self._maps(step)

    #: collected steps wait on the host side in batches of this many (or this many seconds), so that
    #: the rules and the store's queue run back to back on warm caches instead of between every
    #: forward and backward; a non-finite step, a full step, ``mon.last``, ``mon.alerts`` and
    #: ``close()`` process what waits at once. On CUDA the root module's forward hook processes what
    #: has arrived, while the device works through the forward and backward just queued.
    HOST_BATCH = 8
    HOST_LAG_S = 0.25

    def _queue(self, meta: dict[str, Any], host: torch.Tensor, event: Any, *, urgent: bool = False) -> None:
        now = time.monotonic()
        meta["t"] = now
        self._pending.append((meta, host, event))
        p = self._pending
        if meta.get("origin") is not None:
            self._drain(all_pending=True)
        elif event is not None:  # CUDA: the root's forward hook drains; this only bounds the queue
            if len(p) > 4 * self.HOST_BATCH:
                self._drain(all_pending=False)
        elif urgent or len(p) >= self.HOST_BATCH or now - p[0][0]["t"] > self.HOST_LAG_S:
            self._drain(all_pending=True)

    @property
    def last(self) -> StepRecord | None:
        """The latest collected step (its per-layer values, histograms), or ``None`` before the first."""
        if self._open:
            self._drain(all_pending=True)
        return self._last

    @property
    def alerts(self) -> list[Any]:
        """Every alert raised so far (:class:`netsight.store.Alert`)."""
        if self._open:
            self._drain(all_pending=True)
        return self._alerts

    def flush(self) -> None:
        """Process every collected step now (diagnosis, writing); the monitor does it by itself."""
        self._drain(all_pending=True)

    def _drain(self, all_pending: bool) -> None:
        # on CUDA, keep the newest step's copy in flight; the previous ones have long arrived
        items = []
        while self._pending and (all_pending or len(self._pending) > 1):
            meta, host, event = self._pending.popleft()
            if event is not None:
                event.synchronize()
            items.append(self._process(meta, host.numpy()))
        if items:
            self._judge(items)

    # -- host side ------------------------------------------------------------------------------
    def _process(self, meta: dict[str, Any], v: np.ndarray) -> tuple[StepRecord, StepView]:
        if "cheap" in meta:
            return self._process_cheap(meta, v)
        step = meta["step"]
        nm = len(METRICS)
        values = np.full((len(self.layers), nm), np.nan)
        key = meta["gkey"]
        off = len(key) * meta["gcols"]
        g = self.params.pool_grads(key, v[:off].reshape(len(key), meta["gcols"]))
        values[self._p_rows, 0:3] = g[:, :3]
        npar = len(self.params.params)
        if meta["wn"]:
            values[self._p_rows, 3] = self.params.pool_norms(v[off : off + npar])
            off += npar
        if meta["upd"]:
            upd, ref = v[off : off + npar], v[off + npar : off + 2 * npar]
            off += 2 * npar
            with np.errstate(all="ignore"):
                ratio = self.params.pool_norms(upd) / self.params.pool_norms(ref)
            if self.optimizer is not None:  # a layer this optimizer holds no parameter of has no update
                held = self._updated_by(self.optimizer)  # ratio here (NaN, not 0); one it holds some of
                ratio[np.bincount(self.params.owner, weights=held, minlength=len(self.params)) == 0] = np.nan
            values[self._p_rows, 4] = ratio  # (BitFit: only the biases) is measured over all its parameters
        has_grad = np.zeros(len(self.layers), dtype=bool)
        has_grad[self._p_rows] = g[:, 3] > 0
        fwd_origin = meta.get("origin")
        bwd_origin = None
        hists: dict[str, tuple[list[str], np.ndarray]] = {}
        bins = self.edges.numel() + 1
        if "la" in meta:
            la = meta["la"]
            tap = meta["tap"]
            if isinstance(tap, TapLayout):
                tap = tap.finish(v[off : off + tap.size])
                off += meta["tap"].size
            dead = v[off : off + la]
            off += la
            act, dsq, fb, bb = tap.act, tap.delta_sq, tap.fwd_bad, tap.bwd_bad
            n = act[:, 0]
            with np.errstate(all="ignore"):
                ok = n > 0
                values[self._a_rows, 5] = np.where(ok, act[:, 1], np.nan)
                values[self._a_rows, 6] = np.where(
                    n > 1, np.sqrt(act[:, 2] / (n - 1)), np.where(ok, 0.0, np.nan)
                )
                values[self._a_rows, 7] = np.where(ok, act[:, 3] / n, np.nan)
                sat = np.where(ok, act[:, 4] / n, np.nan)
                values[self._a_rows, 9] = np.sqrt(dsq)
            values[self._a_rows, 10] = dead
            satcol = np.full(len(self.layers), np.nan)
            satcol[self._a_rows] = sat
            values[self._sat_rows, 8] = satcol[self._sat_rows]
            if math.isfinite(fb):
                fwd_origin = tap.fwd_names[int(fb)]
            if math.isfinite(bb):
                bwd_origin = tap.bwd_names[int(bb)]
            if meta.get("tree"):
                self._log_tree(tap.fwd_names)
        for kind, rows in meta.get("hists", []):
            names = (
                list(self.tap.layers) if kind == "activation" and self.tap is not None else self.params.layers
            )
            hists[kind] = (list(names), v[off : off + rows * bins].reshape(rows, bins))
            off += rows * bins
        return self._view(StepRecord(step, values, hists), has_grad, fwd_origin, bwd_origin)

    def _updated_by(self, optimizer: torch.optim.Optimizer) -> np.ndarray:
        """``[P]`` bool: which watched parameters the optimizer's groups hold (read now: groups may be
        added while training). All of them when it holds none: an optimizer of master copies (apex,
        DeepSpeed) updates the model's weights by copying, and the measured change is the update."""
        ids = {id(q) for group in optimizer.param_groups for q in group["params"]}
        held = np.array([id(q) in ids for q in self.params.params], dtype=bool)
        return held if held.any() else np.ones_like(held)

    def _process_cheap(self, meta: dict[str, Any], v: np.ndarray) -> tuple[StepRecord, StepView]:
        """Pool the parameters' gradient norms by layer on the host (a handful of values)."""
        g = self.params.pool_grads(meta["cheap"], v.reshape(-1, 1))
        values = np.full((len(self.layers), len(METRICS)), np.nan)
        values[self._p_rows, 0] = g[:, 0]
        has_grad = np.zeros(len(self.layers), dtype=bool)
        has_grad[self._p_rows] = g[:, 3] > 0
        return self._view(StepRecord(meta["step"], values, {}, cols=1), has_grad, meta.get("origin"), None)

    def _view(
        self, record: StepRecord, has_grad: np.ndarray, fwd_origin: str | None, bwd_origin: str | None
    ) -> tuple[StepRecord, StepView]:
        view = StepView(
            step=record.step,
            layers=self.layers,
            metrics=METRICS,
            values=record.values,
            numel=self.numel,
            has_grad=has_grad,
            fwd_origin=fwd_origin,
            bwd_origin=bwd_origin,
        )
        return record, view

    def _judge(self, items: list[tuple[StepRecord, StepView]]) -> None:
        """Run the rules over collected steps (in one pass per rule), write them (or keep them in the
        ring buffer), then deliver the alerts; ``raise_on`` raises once everything is written."""
        found = run_rules(self.detectors, [view for _, view in items])
        first: Any = None
        for (record, _), findings in zip(items, found):
            step = record.step
            if findings:
                for old in self.ring:
                    if not old.written:
                        self._write(old)
                self.ring.clear()
                self._write(record)
            elif self.every(step):
                self._write(record)
                if self._ring_on:
                    self.ring.clear()
            elif self._ring_on:
                self.ring.append(record)
            self._last = record
            raising = self._alert(step, findings)
            first = first or raising
        if first is not None:
            raise AlertError(
                f"raise_on: rule {first.rule!r} fired: {first.message}. Fix the training setup, or drop "
                f"{first.rule!r} from raise_on to only log it.",
                alert=first,
            )

    def _write(self, rec: StepRecord) -> None:
        if self.run is None:
            return
        if rec.cols == len(METRICS):
            self.run.log_layers(rec.step, self.layers, self._metric_list, rec.values.astype(np.float32))
        else:  # a gradient-norm-only step: the other metrics were not measured, nothing to store
            self.run.log_layers(
                rec.step,
                self.layers,
                self._metric_list[: rec.cols],
                rec.values[:, : rec.cols].astype(np.float32),
            )
        for kind, (layers, counts) in rec.hists.items():
            self.run.log_histograms(rec.step, kind, layers, self.edges, counts)

    _metric_list: ClassVar[list[str]] = list(METRICS)

    def _alert(self, step: int, findings: Sequence[Finding]) -> Any:
        """Record and log the findings as alerts; the first whose rule is in ``raise_on``, or ``None``."""
        if not findings:
            return None
        from ..store import Alert

        first: Any = None
        for f in findings:
            alert = Alert(
                step=step, layer=f.layer, rule=f.rule, value=f.value, message=f.message, severity=f.severity
            )
            self._alerts.append(alert)
            if self.writes:
                logger.warning("%s", f.message)
                if self.run is not None:
                    self.run.log_alert(alert)
            if first is None and f.rule in self.raise_on:
                first = alert
        return first

    def _log_tree(self, order_names: list[str]) -> None:
        if self.run is None or self.tap is None:
            return
        order: dict[str, int] = {}
        for n in order_names:
            order.setdefault(n, len(order))
        nodes = []
        for name, module in self.root.named_modules():
            key = name or "<root>"
            parent = None if not name else (name.rsplit(".", 1)[0] if "." in name else "<root>")
            shape = self.tap.shapes.get(key)
            nodes.append(
                {
                    "name": key,
                    "type": type(module).__name__,
                    "parent": parent,
                    "params": int(sum(p.numel() for p in module.parameters())),
                    "out_shape": list(shape) if shape is not None else None,
                    "order": order.get(key, -1),
                }
            )
        self.run.log_module_tree(nodes)

    def _maps(self, step: int) -> None:
        from ..capture import capture, preserved_state
        from ..render import feature_grid

        layers = self._maps_layers
        if layers is None:
            convs = [n for n, m in self.root.named_modules() if isinstance(m, nn.Conv2d)]
            if not convs:
                return
            pick = (
                sorted({round(i * (len(convs) - 1) / 3) for i in range(4)})
                if len(convs) > 4
                else range(len(convs))
            )
            layers = [convs[i] for i in pick]
        x = self.probe
        assert x is not None
        x = x.to(self.device)
        with preserved_state(self.root), torch.no_grad():
            self.root.eval()
            with capture(self.root, layers=layers) as cap:
                self.root(x)
        for name in cap.names:
            act = cap[name].activation
            if not isinstance(act, torch.Tensor) or act.dim() != 4:
                continue
            grid = feature_grid(act, k=self.maps_k)
            self.run.log_image(step, f"activation/{name}", grid.cpu(), layer=name, kind="activation_map")

    def __repr__(self) -> str:
        state = "open" if self._open else "closed"
        return f"Monitor({state}, {len(self.layers)} layers, step {self.start_step + self.step_count})"


def watch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    run: Any = None,
    **options: Any,
) -> Monitor:
    """Watch ``model`` train: per-layer statistics every step, diagnosis online, written to ``run``.

    ::

        run = ns.open_run("netsight-runs", name="mnist-cnn")
        with ns.watch(model, optimizer=opt, run=run):
            for x, y in loader:
                loss = F.cross_entropy(model(x), y)
                opt.zero_grad(); loss.backward(); opt.step()   # collected on opt.step()

    Without ``optimizer``, call ``mon.step()`` after each ``backward``.

    Args:
        model: the network (DataParallel/DDP wrappers are looked through).
        optimizer: collect on each ``optimizer.step()`` through its step pre/post hooks.
        run: a run from :func:`netsight.open_run`, a store directory (a run is opened there), or
            ``None`` (statistics and alerts are kept on the monitor only: ``mon.last``, ``mon.alerts``).
        layers: modules whose outputs get activation statistics and δ (selector as in ``ns.capture``);
            default: parameterised leaves, activation functions and custom leaf modules (not pooling,
            flatten, dropout). Parameter statistics cover every module owning parameters. Both are
            resolved when ``watch`` is called: modules or parameters added later are not watched
            (close the monitor and watch again).
        every: write every n-th step (default 1); the others wait in the ring buffer.
        stats: schedule of the full statistics (activations, δ, |g| mean and max, weight norm, update
            ratio): an int (every n steps, default 10), ``"always"``, ``"log"``, or ``step -> bool``.
        heavy: schedule of histograms and activation maps: ``"log"`` (default), ``"always"``, an int,
            ``"never"``, or ``step -> bool``.
        histograms, hist_edges, hist_sample: histogram weights, gradients and activations in these
            bins (default ``log_edges()``), sampling at most ``hist_sample`` elements per tensor.
        activations, delta, update_ratio, nan_origin: turn those statistics off with ``False``.
        probe, maps_layers, maps_k: on heavy steps, run ``probe`` (a fixed batch) through the model in
            eval mode without gradients and log ``maps_k`` channel maps of ``maps_layers`` (default: up
            to four Conv2d layers) as ``kind="activation_map"`` images.
        detectors: per-rule options (see :mod:`netsight.monitor.detectors`), ``False`` to turn one off.
        dead_window: steps per dead-unit window. sat_eps: saturation tolerance as a fraction of range.
        raise_on: rule names (or ``"all"``) that raise :class:`~netsight.errors.AlertError`.
        ring: steps kept for anomaly-triggered writing (0: off).
        distributed: ``"reduce"`` (pool statistics over ranks; rank 0 writes) or ``"per_rank"``.
        start_step: the first step's number.
        serve: start the dashboard on the run's store in a background thread (``True``, or a dict of
            :func:`netsight.serve` options such as ``{"port": 0}``); ``mon.server`` is its handle. It
            keeps serving after ``close()`` (the finished run stays browsable); ``mon.server.stop()``.
    """
    known = [n for n in inspect.signature(Monitor.__init__).parameters if n not in ("self", "model")]
    for key in options:
        if key not in known:
            near = closest(key, known, n=3)
            hint = f" Did you mean {', '.join(repr(n) for n in near)}?" if near else ""
            raise ArgumentError(
                f"{key}: ns.watch has no option {key!r}.{hint} Its options: {', '.join(known)}."
            )
    return Monitor(model, optimizer, run, **options)
