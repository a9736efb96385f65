"""``ns.explain``: resolve the method, check the options, run it, leave the model as it was."""

from __future__ import annotations

import functools
import inspect
from typing import Any

import torch
from torch import nn

from netsight.capture import preserved_state
from netsight.capture._selectors import unwrap_once
from netsight.errors import ArgumentError, closest

from ._common import TargetSpec, check_inputs
from ._explanation import Explanation
from ._registry import get_method

__all__ = ["explain"]


@functools.cache
def _options_of(fn: Any) -> tuple[str, ...] | None:
    """A method's keyword-only options (``None`` when it takes ``**options``), read once per method."""
    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    return tuple(n for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY and n != "layer")


def _check_options(method: str, fn: Any, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` checked against the method's; ``progress`` is taken by every method (the quick ones,
    without a loop, have no bar to show and are not passed it)."""
    known = _options_of(fn)
    if known is None:
        return options
    if "progress" in options and "progress" not in known:
        options = {k: v for k, v in options.items() if k != "progress"}
    for key in options:
        if key not in known:
            near = closest(key, list(known))
            hint = f" Did you mean {', '.join(repr(n) for n in near)}?" if near else ""
            raise ArgumentError(
                f"{key}: {method} has no option {key!r}.{hint} Its options: {', '.join(known) or 'none'}."
            )
    return options


def explain(
    model: nn.Module,
    inputs: Any,
    target: TargetSpec = None,
    method: str = "saliency",
    layer: str | None = None,
    **options: Any,
) -> Explanation:
    """Explain ``model``'s prediction on ``inputs`` with a registered ``method``.

    ::

        ex = ns.explain(model, x, target=3, method="grad_cam")
        ex.attributions            # [B, 1, H, W] for layer methods, x's shape for input methods
        ex.overlay(x)              # uint8 [B, H, W, 3]

    Args:
        model: any ``nn.Module``; its mode (train/eval) is kept, and every flag, hook, patch and buffer
            (BatchNorm's running statistics) is as it was afterwards, also when the method raises.
        inputs: a batch ``[B, ...]`` on the model's device; the method runs on that device.
        target: an int class, one class per sample (sequence, tensor or numpy array ``[B]``), a
            callable ``output -> tensor [B]``, or ``None`` for the predicted class.
        method: a name from :func:`list_methods` (a miss suggests the nearest names).
        layer: for layer methods, a module path, or a glob, module or type that selects exactly one
            module (default: found automatically, see :func:`netsight.explain._common.default_layer`).
        options: the method's options (``steps=``, ``baseline=``, ``max_batch=``...). ``progress=``
            (``None``: a bar once the work has run two seconds; ``True``; ``False``) is taken by every
            method (the quick ones ignore it).
    """
    info = get_method(method)
    if not isinstance(model, nn.Module):
        raise ArgumentError(f"model: expected a torch.nn.Module, got {type(model).__name__}.")
    if info.inputs == "image":
        check_inputs(inputs, floating=info.kind in ("gradient", "layer"))
    options = _check_options(info.name, info.fn, options)
    # gradients need autograd, which inference mode switches off for good (torch.enable_grad cannot undo
    # it): explanations run outside it, and inputs made inside it (inference tensors) are copied out
    with torch.inference_mode(False), preserved_state(model, buffers=True), unwrap_once():
        if isinstance(inputs, torch.Tensor) and inputs.is_inference():
            inputs = inputs.clone()
        return info.fn(model, inputs, target, layer=layer, **options)
