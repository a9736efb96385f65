"""``ns.capture``: activations and gradients of chosen modules during a ``with`` block."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from types import TracebackType
from typing import Any, Union

import torch
from torch import nn

from ..errors import (
    ArgumentError,
    CaptureBudgetWarning,
    CaptureError,
    UnknownNameError,
    closest,
    user_stacklevel,
)
from ._hooks import Hooks, in_backward
from ._selectors import Layers, resolve, strip_prefix, unwrap
from ._structure import Rebuild, flatten, primary
from .records import Record
from .reducers import Reducer, get_reducer

# a runtime alias, so typing.Union (X | Y of these fails at runtime on Python 3.10)
ReduceSpec = Union[  # noqa: UP007
    str, Reducer, Callable[[torch.Tensor], Any], Sequence[Any], Mapping[str, Any], None
]


@dataclass
class _Call:
    """Mutable per-call storage while the block runs; frozen into a Record on access."""

    name: str
    index: int
    rebuild: Rebuild
    n_leaves: int
    primary: int | None
    shape: tuple[int, ...] | None
    dtype: torch.dtype | None
    kept: list[torch.Tensor | None] | None = None
    grads: list[torch.Tensor | None] = field(default_factory=list)
    reduced: dict[str, Any] = field(default_factory=dict)
    grad_reduced: dict[str, Any] = field(default_factory=dict)

    def record(self, calls: tuple[Record, ...] = ()) -> Record:
        activation = self.rebuild(self.kept) if self.kept is not None else None
        grad = self.rebuild(self.grads) if any(g is not None for g in self.grads) else None
        return Record(
            name=self.name,
            activation=activation,
            grad=grad,
            reduced=dict(self.reduced),
            grad_reduced=dict(self.grad_reduced),
            shape=self.shape,
            dtype=self.dtype,
            call=self.index,
            calls=calls,
        )


def _reducers(spec: ReduceSpec) -> list[Reducer]:
    if spec is None:
        return []
    if isinstance(spec, Mapping):
        out: list[Reducer] = []
        for key, value in spec.items():
            red = get_reducer(value)
            out.append(red if red.name == key else _Renamed(str(key), red))
        return out
    if isinstance(spec, (str, Reducer)) or callable(spec):
        return [get_reducer(spec)]
    if isinstance(spec, Sequence):
        reds = [get_reducer(s) for s in spec]
        names = [r.name for r in reds]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ArgumentError(
                f"reduce: two reducers share the name {sorted(dup)[0]!r}. Pass a dict "
                "{name: reducer} to name them apart."
            )
        return reds
    raise ArgumentError(
        f"reduce: cannot use {type(spec).__name__} {spec!r}. Pass None (keep full tensors), a reducer "
        "name ('stats', 'hist', 'topk', 'downsample'), a callable, or a list/dict of them."
    )


@dataclass(frozen=True)
class _Renamed:
    name: str
    inner: Reducer

    def __call__(self, x: torch.Tensor) -> Any:
        return self.inner(x)


class Capture:
    """Records of the selected modules during a ``with`` block. Create it with :func:`capture`."""

    def __init__(
        self,
        model: nn.Module,
        layers: Layers = None,
        *,
        grads: bool = False,
        reduce: ReduceSpec = None,
        keep_full: bool | None = None,
        to: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        max_bytes: int | None = None,
        detach: bool = True,
    ) -> None:
        self._root = unwrap(model)
        self._layers = layers
        self.grads = bool(grads)
        self._reducers = _reducers(reduce)
        self.keep_full = (not self._reducers) if keep_full is None else bool(keep_full)
        if not self.keep_full and not self._reducers:
            raise ArgumentError(
                "keep_full: False with reduce=None would keep nothing. Pass reduce='stats' (or another "
                "reducer), or keep_full=True."
            )
        self.to = torch.device(to) if to is not None else None
        if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise ArgumentError(
                f"dtype: expected a floating torch.dtype such as torch.float16, got {dtype!r}."
            )
        self.dtype = dtype
        if max_bytes is not None and (not isinstance(max_bytes, int) or max_bytes < 0):
            raise ArgumentError(
                f"max_bytes: expected a non-negative int (bytes), got {max_bytes!r}. "
                "Pass e.g. max_bytes=500_000_000 for 500 MB, or None for no budget."
            )
        self.max_bytes = max_bytes
        if not detach and (self.to is not None or self.dtype is not None):
            raise ArgumentError("detach: False keeps the live tensors, so `to` and `dtype` must be None.")
        self.detach = detach
        self._selected = resolve(self._root, layers)
        self._hooks: Hooks | None = None
        self._calls: dict[str, list[_Call]] = {}
        self._order: list[str] = []
        self._held = 0
        self.over_budget = False
        self._fallback: list[Reducer] = []
        self._closed = False

    # -- context ---------------------------------------------------------------------------------
    def __enter__(self) -> Capture:
        if self._hooks is not None and self._hooks.active:
            raise CaptureError("this capture is already open; use a new ns.capture(...) for a nested block.")
        if self.grads and not torch.is_grad_enabled():
            raise CaptureError(
                "grads=True, but gradients are disabled here (torch.no_grad() or torch.inference_mode() "
                "is active). Open the capture outside the no_grad block, or pass grads=False."
            )
        hooks = Hooks(self._root)
        hooks.__enter__()
        try:
            for name, module in self._selected:
                hooks.forward(module, partial(self._on_forward, name))
        except BaseException:
            hooks.remove()
            raise
        self._hooks = hooks
        self._closed = False
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Remove every hook now (the ``with`` block does this on exit). Records stay readable."""
        hooks, self._hooks = self._hooks, None
        self._closed = True
        if hooks is not None:
            hooks.remove()

    # -- hooks -----------------------------------------------------------------------------------
    def _keep(self, t: torch.Tensor) -> torch.Tensor:
        if not self.detach:
            return t
        dev = self.to or t.device
        dtype = self.dtype if (self.dtype is not None and t.is_floating_point()) else t.dtype
        out = t.detach()
        if out.device == dev and out.dtype == dtype:
            return out.clone()  # later in-place ops (ReLU(inplace=True)) must not change what we hold
        return out.to(device=dev, dtype=dtype, copy=True)

    def _bytes(self, ts: Sequence[torch.Tensor | None]) -> int:
        total = 0
        for t in ts:
            if t is None:
                continue
            dtype = self.dtype if (self.dtype is not None and t.is_floating_point()) else t.dtype
            total += t.numel() * dtype.itemsize
        return total

    def _fits(self, ts: Sequence[torch.Tensor | None], where: str) -> bool:
        if self.max_bytes is None:
            return True
        if not self.over_budget and self._held + self._bytes(ts) <= self.max_bytes:
            return True
        if not self.over_budget:
            self.over_budget = True
            if not self._reducers:
                self._fallback = [get_reducer("stats")]
            warnings.warn(
                f"max_bytes: the capture reached its budget of {self.max_bytes:,} bytes at {where}; "
                "from here on it keeps reductions only"
                f" ({', '.join(r.name for r in self._active_reducers())}). Raise max_bytes, choose fewer "
                "layers, or pass reduce=... to keep summaries from the start.",
                CaptureBudgetWarning,
                stacklevel=user_stacklevel(),  # the user's line, not the hook's caller in torch
            )
        return False

    def _active_reducers(self) -> list[Reducer]:
        return self._reducers or self._fallback

    def _on_forward(self, name: str, module: nn.Module, inputs: Any, output: Any) -> None:
        if in_backward():
            # a forward run by autograd during backward (torch.utils.checkpoint recomputing its
            # segment) is not a call of the model; the gradient reaches the original call's output
            return
        leaves, rebuild = flatten(output)
        p = primary(leaves)
        calls = self._calls.setdefault(name, [])
        if not calls:
            self._order.append(name)
        pt = leaves[p] if p is not None else None
        call = _Call(
            name=name,
            index=len(calls),
            rebuild=rebuild,
            n_leaves=len(leaves),
            primary=p,
            shape=tuple(pt.shape) if pt is not None else None,
            dtype=pt.dtype if pt is not None else None,
            grads=[None] * len(leaves),
        )
        calls.append(call)
        if self.keep_full and self._fits(leaves, f"{name!r} (forward)"):
            call.kept = [self._keep(t) if t is not None else None for t in leaves]
            self._held += self._bytes(call.kept)
        reds = self._active_reducers()
        if pt is not None and reds:
            with torch.no_grad():
                call.reduced = {r.name: r(pt) for r in reds}
        if self.grads:
            if not torch.is_grad_enabled():
                raise CaptureError(
                    f"grads=True, but {name!r} ran with gradients disabled (torch.no_grad() or "
                    "torch.inference_mode() inside the capture block, or torch.utils.checkpoint with "
                    "use_reentrant=True around it). Run the forward with gradients enabled (checkpoint "
                    "with use_reentrant=False), or capture with grads=False."
                )
            for i, t in enumerate(leaves):
                if t is not None and t.requires_grad and (t.is_floating_point() or t.is_complex()):
                    assert self._hooks is not None
                    self._hooks.tensor(t, partial(self._on_grad, call, i))

    def _on_grad(self, call: _Call, i: int, grad: torch.Tensor) -> None:
        if self._closed:
            return
        if self.keep_full:
            old, call.grads[i] = call.grads[i], None  # an earlier pass's gradient is never kept as this one's
            if old is not None:
                self._held -= self._bytes([old])
            if self._fits([grad], f"{call.name!r} (backward)"):
                kept = self._keep(grad)
                call.grads[i] = kept
                self._held += self._bytes([kept])
        reds = self._active_reducers()
        if i == call.primary and reds:
            with torch.no_grad():
                call.grad_reduced = {r.name: r(grad) for r in reds}

    # -- reading ---------------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        """Captured module paths, in the order they first ran."""
        return list(self._order)

    @property
    def selected(self) -> list[str]:
        """Every module path the selector chose, whether it ran or not."""
        return [n for n, _ in self._selected]

    @property
    def nbytes(self) -> int:
        """Bytes of full tensors the capture holds now (reductions are not counted)."""
        return self._held

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and strip_prefix(name) in self._calls

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self._order)

    def __getitem__(self, name: str) -> Record:
        key = strip_prefix(name) if isinstance(name, str) else name
        calls = self._calls.get(key)
        if calls is None:
            if key in self.selected:
                raise KeyError(
                    f"{name!r} was selected but did not run during the block; run the forward pass "
                    "inside the `with ns.capture(...)` block."
                )
            near = closest(str(key), self.names)
            hint = f" Captured nearest: {', '.join(near)}." if near else ""
            raise KeyError(f"{name!r} is not in this capture.{hint} See cap.names.")
        records = tuple(c.record() for c in calls)
        return calls[0].record(calls=records)

    def get(self, name: str, default: Record | None = None) -> Record | None:
        try:
            return self[name]
        except KeyError:
            return default

    def records(self) -> dict[str, Record]:
        """Every captured module's Record, by path, in execution order."""
        return {n: self[n] for n in self._order}

    def stacked(self, reducer: str = "stats", *, grad: bool = False) -> tuple[list[str], torch.Tensor]:
        """One reducer's results for every call of every module, stacked: ``(labels, tensor[N, ...])``.

        Labels are the module paths, with ``[i]`` appended for the second and later calls. The tensor
        stays on the device, so one transfer brings every layer's summary to the host. A name that is
        not one of the capture's reductions raises :class:`UnknownNameError`; a reducer whose results
        are not same-shaped tensors (``"topk"``, ``"downsample"`` over layers of different widths)
        raises :class:`ArgumentError`.
        """
        labels: list[str] = []
        rows: list[torch.Tensor] = []
        known = {r.name for r in self._active_reducers()}
        for name in self._order:
            for c in self._calls[name]:
                src = c.grad_reduced if grad else c.reduced
                known.update(src)
                if reducer not in src:
                    continue
                val = src[reducer]
                label = name if c.index == 0 else f"{name}[{c.index}]"
                if not isinstance(val, torch.Tensor):
                    raise ArgumentError(
                        f"reducer: {reducer!r} gave a {type(val).__name__} for {label!r}, not a tensor, so "
                        "it cannot be stacked. Read it per layer from cap[name].reduced instead."
                    )
                if rows and val.shape != rows[0].shape:
                    raise ArgumentError(
                        f"reducer: {reducer!r} gave shape {tuple(rows[0].shape)} for {labels[0]!r} but "
                        f"{tuple(val.shape)} for {label!r}, so they cannot be stacked. Read them per layer "
                        "from cap[name].reduced, or stack a fixed-size reducer such as 'stats'."
                    )
                labels.append(label)
                rows.append(val)
        if reducer not in known:
            near = closest(reducer, sorted(known))
            hint = f" Did you mean {', '.join(repr(n) for n in near)}?" if near else ""
            raise UnknownNameError(
                f"reducer: this capture has no reduction named {reducer!r}.{hint} Its reductions: "
                f"{', '.join(sorted(known)) or 'none'}; pass reduce={reducer!r} to ns.capture to get it."
            )
        if not rows:
            return [], torch.zeros((0,))
        dev = rows[0].device
        return labels, torch.stack([r.to(dev) for r in rows])

    def clear(self) -> None:
        """Forget every record (hooks stay): for captures that span many steps."""
        self._calls.clear()
        self._order.clear()
        self._held = 0
        self.over_budget = False
        self._fallback = []

    def __repr__(self) -> str:
        state = "closed" if self._closed or self._hooks is None else "open"
        return f"Capture({state}, {len(self._order)} of {len(self._selected)} modules, {self._held:,} bytes)"


def capture(
    model: nn.Module,
    layers: Layers = None,
    *,
    grads: bool = False,
    reduce: ReduceSpec = None,
    keep_full: bool | None = None,
    to: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    max_bytes: int | None = None,
    detach: bool = True,
) -> Capture:
    """Capture what the selected modules output (and the gradients flowing back) inside a block.

    ::

        with ns.capture(model, layers="features.*", grads=True) as cap:
            out = model(x)
            out[:, 3].sum().backward()        # backward inside the block when grads=True
        cap["features.0"].activation, cap["features.0"].grad

    Args:
        model: any ``nn.Module``; DataParallel/DDP wrappers are looked through (paths have no
            ``module.`` prefix). A ``torch.compile``d model, or a selected TorchScript module, is
            refused with an explanation.
        layers: a module path, a segment-wise glob (``"blocks.*.attn"``, ``"**.conv1"``), a module
            type (``nn.Conv2d``), a module, a predicate ``(name, module) -> bool``, or a list of them.
            ``None``: every leaf module.
        grads: also record the gradient with respect to each output (from tensor hooks, so in-place
            ops after the module do not change it). Run ``backward`` inside the block. The latest
            backward pass's gradient is kept.
        reduce: summarise on the device as outputs are produced: ``"stats"``, ``"hist"``, ``"topk"``,
            ``"downsample"``, a reducer instance (``Histogram(edges)``, ``TopK(k)``), a callable, or a
            list/dict of them. With ``reduce`` set, full tensors are not kept unless ``keep_full``.
        keep_full: keep full (detached, cloned) tensors; default: only when ``reduce`` is None.
        to, dtype: move/cast kept tensors (``to="cpu"``, ``dtype=torch.float16``).
        max_bytes: never hold more than this many bytes of full tensors; past it, keep reductions
            only (``"stats"`` when none were asked for) and warn once (:class:`CaptureBudgetWarning`).
        detach: ``False`` keeps the live output tensors (graph attached, not cloned) for methods
            that differentiate through them.
    """
    return Capture(
        model,
        layers,
        grads=grads,
        reduce=reduce,
        keep_full=keep_full,
        to=to,
        dtype=dtype,
        max_bytes=max_bytes,
        detach=detach,
    )
