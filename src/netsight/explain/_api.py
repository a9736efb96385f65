"""``ns.explain``: resolve the method, check the options, run it, leave the model as it was."""

from __future__ import annotations

import functools
import inspect
import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from netsight.capture import preserved_state
from netsight.capture._selectors import unwrap_once
from netsight.errors import ArgumentError, NetsightError, NetsightWarning, closest, user_stacklevel

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
    without a loop, have no bar to show and are not passed it), and so is ``forward_kwargs`` (every
    built-in method takes it; a method registered without it is passed none, and refuses any)."""
    known = _options_of(fn)
    if known is None:
        return options
    if "progress" in options and "progress" not in known:
        options = {k: v for k, v in options.items() if k != "progress"}
    if "forward_kwargs" in options and "forward_kwargs" not in known:
        given = options["forward_kwargs"]
        if not (isinstance(given, Mapping) and not given):  # {} (or None, never put here) asks nothing
            raise ArgumentError(
                f"forward_kwargs: {method} (from {getattr(fn, '__module__', '?')}) does not take keyword "
                "arguments for the model's forward. Give it a forward_kwargs= option, or wrap the model "
                "in a module that supplies them."
            )
        options = {k: v for k, v in options.items() if k != "forward_kwargs"}
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
    *,
    forward_kwargs: Mapping[str, Any] | None = None,
    **options: Any,
) -> Explanation:
    """Explain ``model``'s prediction on ``inputs`` with a registered ``method``.

    ::

        ex = ns.explain(model, x, target=3, method="grad_cam")
        ex.attributions            # [B, 1, H, W] for layer methods, x's shape for input methods
        ex.overlay(x)              # uint8 [B, H, W, 3]
        ex = ns.explain(bert, ids, target=1, method="kernel_shap", forward_kwargs={"attention_mask": mask})

    Args:
        model: any ``nn.Module``; its mode (train/eval) is kept, and every flag, hook, patch and buffer
            (BatchNorm's running statistics) is as it was afterwards, also when the method raises.
        inputs: a batch ``[B, ...]`` on the model's device; the method runs on that device.
        target: an int class, one class per sample (sequence, tensor or numpy array ``[B]``), a
            callable ``output -> tensor [B]``, or ``None`` for the predicted class.
        method: a name from :func:`list_methods` (a miss suggests the nearest names).
        layer: for layer methods, a module path, or a glob, module or type that selects exactly one
            module (default: found automatically, see :func:`netsight.explain._common.default_layer`).
        forward_kwargs: keyword arguments the model's forward needs besides the input (a Hugging Face
            model's ``attention_mask``, a second input, a ``lengths`` tensor), taken by every method:
            each call is ``model(rows, **kw)``. A tensor whose first dimension is the batch size ``B``
            of ``inputs`` is *per sample*: every call gets, for each of its rows, the row of the sample
            that row belongs to (integrated gradients' path points, SmoothGrad's noisy copies, the
            perturbed copies of occlusion, RISE, LIME, KernelSHAP and Score-CAM, each chunk of them).
            It must be on the inputs' device. Every other value (non-tensors, 0-d tensors, tensors of
            another first dimension) is passed unchanged to every call. With ``B == 1`` any tensor of
            first dimension 1 is per sample, i.e. repeated for every row, which is also right for a
            broadcastable ``[1, ...]`` value. The attention methods run one forward of the whole batch:
            they add ``forward_kwargs`` to a dict of inputs, or pass a tensor input by the name of the
            forward's first argument (``{"input_ids": ids, **forward_kwargs}``), so an
            ``attention_mask`` there also picks each sample's explained token.
        options: the method's options (``steps=``, ``baseline=``, ``max_batch=``...). ``progress=``
            (``None``: a bar once the work has run two seconds; ``True``; ``False``) is taken by every
            method (the quick ones ignore it).
    """
    info = get_method(method)
    if not isinstance(model, nn.Module):
        raise ArgumentError(f"model: expected a torch.nn.Module, got {type(model).__name__}.")
    if info.inputs == "image":
        check_inputs(inputs, floating=info.kind in ("gradient", "layer"))
    if forward_kwargs is not None:
        options["forward_kwargs"] = forward_kwargs
    options = _check_options(info.name, info.fn, options)
    _warn_if_random(model, info.name)
    # gradients need autograd, which inference mode switches off for good (torch.enable_grad cannot undo
    # it): explanations run outside it, and inputs made inside it (inference tensors) are copied out
    with torch.inference_mode(False), preserved_state(model, buffers=True), unwrap_once():
        if isinstance(inputs, torch.Tensor) and inputs.is_inference():
            inputs = inputs.clone()
        try:
            return info.fn(model, inputs, target, layer=layer, **options)
        except NetsightError:
            raise
        except Exception as exc:  # the model's own error (a shape mismatch...): say what it was given
            if isinstance(inputs, torch.Tensor):
                exc.add_note(
                    f"netsight: raised while explaining with {info.name!r} a batch of shape "
                    f"{tuple(inputs.shape)} (the method runs the model on chunks of it, and on one sample "
                    "first to size the chunks). inputs must be a batch [B, ...]: for a single sample, "
                    "pass x.unsqueeze(0)."
                )
            raise


def _warn_if_random(model: nn.Module, method: str) -> None:
    """Warn when dropout is active: the model's mode is kept (the user's choice), but then every forward
    drops different units and two calls give different attributions."""
    active = [
        name or type(model).__name__
        for name, m in model.named_modules()
        if isinstance(m, nn.modules.dropout._DropoutNd) and m.training and m.p > 0
    ]
    if active:
        warnings.warn(
            f"model: {len(active)} dropout module(s) in training mode ({', '.join(active[:3])}"
            f"{', ...' if len(active) > 3 else ''}): each forward of {method} drops different units, so the "
            "attributions are random. Call model.eval() before explaining (netsight keeps the mode you set).",
            NetsightWarning,
            stacklevel=user_stacklevel(),
        )
