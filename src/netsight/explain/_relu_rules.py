"""Modified ReLU backward rules (guided backpropagation, deconvnet), installed through Hooks.

Every ``nn.ReLU`` gets a forward hook; an in-place ReLU is first switched to out-of-place with a
reversible ``Hooks.patch`` (its ``inplace`` flag comes back on exit), because a rule needs the ReLU's
input and output as separate tensors. ReLUs called functionally (``F.relu``) inside a ``forward`` are
not modules and keep their ordinary gradient.

- guided (Springenberg et al. 2015): the gradient reaching a ReLU is clamped at 0, then the ReLU's own
  backward masks it by ``input > 0``: ``(x > 0) * max(g, 0)``.
- deconvnet (Zeiler & Fergus 2014): the ReLU's backward is replaced by a ReLU of the gradient,
  ``max(g, 0)``, whatever the forward input was.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from netsight.capture import Hooks


def _clamp(g: torch.Tensor) -> torch.Tensor:
    return g.clamp(min=0)


def install(hooks: Hooks, model: nn.Module, rule: str) -> int:
    """Install ``rule`` ("guided" | "deconvnet") on every ``nn.ReLU``; returns how many were found."""
    n = 0
    for module in model.modules():
        if not isinstance(module, nn.ReLU):
            continue
        n += 1
        if module.inplace:
            hooks.patch(module, "inplace", False)
        if rule == "guided":

            def guided(mod: nn.Module, args: Any, out: torch.Tensor) -> None:
                if out.requires_grad:
                    hooks.tensor(out, _clamp)

            hooks.forward(module, guided)
        else:

            def deconv(mod: nn.Module, args: Any, out: torch.Tensor) -> torch.Tensor | None:
                x = args[0]
                if not x.requires_grad:
                    return None
                new: torch.Tensor = x + (out - x).detach()  # the value of out, the gradient of identity
                hooks.tensor(new, _clamp)
                return new

            hooks.forward(module, deconv)
    return n
