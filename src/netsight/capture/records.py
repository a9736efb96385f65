"""Record: what one module produced during a capture, forward and backward."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass(frozen=True)
class Record:
    """One module's output and gradient, as captured.

    Attributes:
        name: the module's path in ``model.named_modules()`` (no ``module.`` prefix).
        activation: the output, with the structure the module returned (tensor, tuple, dict,
            ``ModelOutput``); tensors detached (and moved/cast as the capture asked). ``None`` when only
            reductions were kept.
        grad: the gradient of what was backpropagated with respect to that output, same structure;
            ``None`` where no gradient reached it or gradients were not requested.
        reduced: reductions of the primary output (its first floating-point tensor), by reducer name:
            ``{"stats": tensor[9], "hist": tensor[bins], ...}``, on the output's device.
        grad_reduced: the same reductions of the primary output's gradient.
        shape: the primary output's shape.
        call: which call of the module this is (0 for the first).
        calls: every call's Record, in order, when this is the summary Record of a module
            (``cap[name]``); a module that ran once has ``calls == (itself-like record,)``.
    """

    name: str
    activation: Any = None
    grad: Any = None
    reduced: Mapping[str, Any] = field(default_factory=dict)
    grad_reduced: Mapping[str, Any] = field(default_factory=dict)
    shape: tuple[int, ...] | None = None
    dtype: torch.dtype | None = None
    call: int = 0
    calls: tuple[Record, ...] = ()

    def stat(self, name: str, *, grad: bool = False) -> float:
        """One statistic of the primary output (or its gradient) as a float; needs ``reduce='stats'``."""
        from .reducers import STAT_NAMES

        source = self.grad_reduced if grad else self.reduced
        vec = source.get("stats")
        if vec is None:
            what = "grad_reduced" if grad else "reduced"
            raise KeyError(
                f"{self.name}: no 'stats' in {what}. Capture with reduce='stats' (or a list containing it)."
            )
        try:
            i = STAT_NAMES.index(name)
        except ValueError:
            raise KeyError(f"name: unknown statistic {name!r}; known: {', '.join(STAT_NAMES)}") from None
        return float(vec[i])

    def __repr__(self) -> str:
        parts = [f"name={self.name!r}", f"shape={self.shape}"]
        if self.activation is not None:
            parts.append("activation=kept")
        if self.grad is not None:
            parts.append("grad=kept")
        if self.reduced:
            parts.append(f"reduced={sorted(self.reduced)}")
        if len(self.calls) > 1:
            parts.append(f"calls={len(self.calls)}")
        return f"Record({', '.join(parts)})"
