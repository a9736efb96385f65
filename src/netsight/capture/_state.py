"""Snapshots of what a capture or an explanation may touch, and their exact restoration."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ModelState:
    """Every submodule's ``training`` flag and every parameter's ``requires_grad``, by identity; with
    ``buffers``, also a copy of the buffers of every module in training mode (module, name, buffer,
    value), the ones a forward may update (BatchNorm's running statistics, spectral norm's vectors)."""

    training: tuple[tuple[nn.Module, bool], ...]
    requires_grad: tuple[tuple[nn.Parameter, bool], ...]
    buffers: tuple[tuple[nn.Module, str, torch.Tensor, torch.Tensor], ...] = ()

    @classmethod
    def of(cls, model: nn.Module, *, buffers: bool = False) -> ModelState:
        mods: list[tuple[nn.Module, bool]] = []
        params: list[tuple[nn.Parameter, bool]] = []
        kept: list[tuple[nn.Module, str, torch.Tensor, torch.Tensor]] = []
        seen: set[int] = set()
        for m in model.modules():  # one traversal (this runs on every explanation's hot path)
            mods.append((m, m.training))
            for p in m._parameters.values():
                if p is not None and id(p) not in seen:
                    seen.add(id(p))
                    params.append((p, p.requires_grad))
            if buffers and m.training:  # a module in eval mode updates no buffer: nothing to copy
                kept += [(m, n, b, b.detach().clone()) for n, b in m._buffers.items() if b is not None]
        return cls(tuple(mods), tuple(params), tuple(kept))

    def restore(self) -> None:
        for module, flag in self.training:
            if module.training is not flag:  # nn.Module.__setattr__ is slow; touch only what changed
                module.training = flag
        for param, flag in self.requires_grad:
            if param.requires_grad != flag:
                param.requires_grad_(flag)
        # every kept buffer is copied back: the batch-norm kernels update the running statistics in
        # place without bumping their version counters, so no cheaper test tells which ones changed
        with torch.no_grad():
            for module, name, buf, value in self.buffers:
                buf.copy_(value)
                if module._buffers.get(name) is not buf:
                    module._buffers[name] = buf

    def differences(self, model: nn.Module) -> list[str]:
        """What changed since the snapshot, in words; empty when nothing did."""
        names = {id(m): n for n, m in model.named_modules()}
        pnames = {id(p): n for n, p in model.named_parameters()}
        out = [
            f"{names.get(id(m), '?')}.training: {flag} -> {m.training}"
            for m, flag in self.training
            if m.training != flag
        ]
        out += [
            f"{pnames.get(id(p), '?')}.requires_grad: {flag} -> {p.requires_grad}"
            for p, flag in self.requires_grad
            if p.requires_grad != flag
        ]
        return out


@contextmanager
def preserved_state(model: nn.Module, *, buffers: bool = False) -> Iterator[ModelState]:
    """Restore every ``training`` flag and ``requires_grad`` of ``model`` on exit, whatever happened;
    with ``buffers``, also the buffers its forwards in training mode update (explanations and the
    monitor's replay leave no trace of their own forwards; a capture does not take this: the user's
    forwards inside it are theirs)."""
    state = ModelState.of(model, buffers=buffers)
    try:
        yield state
    finally:
        state.restore()


def hooks_on(model: nn.Module) -> dict[str, int]:
    """Count the hooks on every submodule of ``model``, by module path; empty when there are none.

    Counts forward, forward-pre, backward and backward-pre hooks (also the ``with_kwargs`` kind) and
    the ``state_dict`` hooks are ignored. Tests and users use it to check nothing was left behind.
    """
    found: dict[str, int] = {}
    for name, module in model.named_modules():
        n = 0
        for attr in (
            "_forward_hooks",
            "_forward_pre_hooks",
            "_backward_hooks",
            "_backward_pre_hooks",
        ):
            n += len(getattr(module, attr, {}) or {})
        if n:
            found[name or "<root>"] = n
    return found
