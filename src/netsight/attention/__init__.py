"""Attention: capture it from the models people use, explain with it, and show it, at any length.

``attention(model, inputs, layers=None, reduce=None)`` returns :class:`AttentionMaps`, the post-softmax
probabilities ``[batch, heads, query, key]`` of every attention module by path. Sources:
``nn.MultiheadAttention`` (``nn.Transformer*``, torchvision ViT), Hugging Face BERT-/GPT-2-like models and
timm ViTs (see :mod:`netsight.attention._sources`). Computations on maps live in :mod:`.rollout`
(rollout, flow, gradient-weighted rollout); pictures in :mod:`.pictures` (layer-by-head grid, ViT patch
overlays) and :mod:`.html` (token-to-token head view, token highlighting).
"""

from __future__ import annotations

import sys
import types
from typing import Any

from ._capture import attention
from ._maps import AttentionMaps
from ._reduce import Reduction
from ._sources import find_sources
from .rollout import Rollout, attention_flow, grad_rollout, rollout

__all__ = [
    "AttentionMaps",
    "Reduction",
    "Rollout",
    "attention",
    "attention_flow",
    "find_sources",
    "grad_rollout",
    "rollout",
]


class _AttentionModule(types.ModuleType):
    """This package, callable as ``attention(...)``.

    Importing ``netsight.attention`` (for ``Reduction``, say) binds the *package* to the name
    ``netsight.attention``, shadowing the lazily exported function; calling the package forwards to
    :func:`attention`, so ``ns.attention(model, x)`` works in either order.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> AttentionMaps:
        return attention(*args, **kwargs)


sys.modules[__name__].__class__ = _AttentionModule
