"""Hooks: the one owner of every hook and reversible edit netsight puts on a user's model.

Capture, explain, attention and monitor all go through it; nothing else calls ``register_*_hook``.
It is a context manager (STYLE.md, principle 1): everything registered inside the block is removed in
``__exit__``, and every submodule's ``training`` flag and every parameter's ``requires_grad`` are
restored, whatever happened in the block.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from types import TracebackType
from typing import Any

import torch
from torch import nn

from ..errors import CaptureError
from ._handles import HandleList, Removable
from ._state import ModelState

_MISSING = object()


_graph_task: Callable[[], int] = getattr(torch._C, "_current_graph_task_id", lambda: -1)


def in_backward() -> bool:
    """Whether a backward pass is running on this thread: a forward hook that fires then belongs to a
    forward that autograd re-runs (``torch.utils.checkpoint`` recomputing its segment, the check
    ``torch.utils.checkpoint`` itself makes), not to a call of the model."""
    return _graph_task() != -1


class Hooks:
    """Register hooks and reversible edits on ``model``; all undone on exit or on ``remove()``."""

    def __init__(self, model: nn.Module, *, restore_state: bool = True) -> None:
        """``restore_state=False``: on exit remove hooks and undo patches, but leave every ``training``
        flag and ``requires_grad`` as they are then (for sessions that span a training run, such as the
        monitor's, during which the user may switch modes or freeze layers)."""
        self.model = model
        self._restore_state = restore_state
        self._handles = HandleList()
        self._state: ModelState | None = None
        self._open = False

    # -- context ---------------------------------------------------------------------------------
    def __enter__(self) -> Hooks:
        if self._open:
            raise CaptureError(
                "this hook session is already open; a capture block cannot be re-entered while it runs. "
                "Open a new one (call ns.capture(...) again)."
            )
        self._state = ModelState.of(self.model) if self._restore_state else None
        self._open = True
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.remove()

    @property
    def active(self) -> bool:
        return self._open

    def remove(self) -> None:
        """Remove every hook, undo every edit, restore flags. Safe to call twice."""
        try:
            self._handles.remove()
        finally:
            if self._state is not None:
                self._state.restore()
            self._open = False

    def _check(self) -> None:
        if not self._open:
            raise CaptureError(
                "hooks can only be added inside the `with` block that owns them. Use "
                "`with Hooks(model) as h: h.forward(...)`."
            )

    def _hookable(self, module: nn.Module) -> nn.Module:
        if isinstance(module, torch.jit.ScriptModule):  # torch raises a bare RuntimeError for these
            name = next((n for n, m in self.model.named_modules() if m is module), None)
            where = f"the module {name!r}" if name else f"this {type(module).__name__}"
            raise CaptureError(
                f"{where} is a TorchScript module (torch.jit.script/trace), and PyTorch cannot hook "
                "TorchScript modules or anything inside them. Select modules outside it, or capture the "
                "original module and script it afterwards."
            )
        return module

    # -- registrations ---------------------------------------------------------------------------
    def add(self, handle: Removable) -> Removable:
        """Keep any removable handle (a tensor hook, a foreign handle) with the others."""
        return self._handles.add(handle)

    def forward(
        self, module: nn.Module, fn: Callable[..., Any], *, with_kwargs: bool = False, prepend: bool = False
    ) -> Removable:
        """A forward hook ``fn(module, inputs, output)``.

        With ``with_kwargs``: ``fn(module, args, kwargs, output)``.
        """
        self._check()
        return self._handles.add(
            self._hookable(module).register_forward_hook(fn, with_kwargs=with_kwargs, prepend=prepend)
        )

    def forward_pre(
        self, module: nn.Module, fn: Callable[..., Any], *, with_kwargs: bool = False, prepend: bool = False
    ) -> Removable:
        """A forward pre-hook ``fn(module, inputs)``."""
        self._check()
        return self._handles.add(
            self._hookable(module).register_forward_pre_hook(fn, with_kwargs=with_kwargs, prepend=prepend)
        )

    def backward(self, module: nn.Module, fn: Callable[..., Any]) -> Removable:
        """A full backward hook ``fn(module, grad_input, grad_output)``."""
        self._check()
        return self._handles.add(self._hookable(module).register_full_backward_hook(fn))

    def tensor(self, t: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor | None]) -> Removable:
        """A gradient hook on tensor ``t``; removed with the rest."""
        self._check()
        return self._handles.add(t.register_hook(fn))  # type: ignore[no-untyped-call]

    def patch(self, obj: object, attr: str, value: object) -> Removable:
        """Set ``obj.attr = value`` until exit; the old value (or its absence) comes back."""
        self._check()
        old = obj.__dict__.get(attr, _MISSING) if hasattr(obj, "__dict__") else _MISSING
        if old is _MISSING and isinstance(obj, nn.Module):
            for store in ("_parameters", "_buffers", "_modules"):
                bucket = obj.__dict__.get(store, {})
                if attr in bucket:
                    old = bucket[attr]
                    break
        setattr(obj, attr, value)

        def undo() -> None:
            if old is _MISSING:
                with contextlib.suppress(AttributeError):
                    delattr(obj, attr)
            else:
                setattr(obj, attr, old)

        return self._handles.add_undo(undo)

    def set_training(self, module: nn.Module, mode: bool) -> None:
        """Switch ``module.train(mode)``; every flag is restored on exit."""
        self._check()
        module.train(mode)

    def set_requires_grad(self, param: torch.Tensor, flag: bool) -> None:
        """Set ``param.requires_grad``; restored on exit."""
        self._check()
        param.requires_grad_(flag)
