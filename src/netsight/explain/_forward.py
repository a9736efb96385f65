"""``forward_kwargs=``: keyword arguments of every model call, expanded to the rows of each call.

A method calls ``model(rows, **kw)`` on rows made from the samples of the batch: the samples
themselves, their interpolation points (integrated gradients), noisy copies (SmoothGrad), masked copies
(occlusion, RISE, LIME, KernelSHAP, Score-CAM). :func:`forward_args` splits the user's mapping once
into *per-sample* tensors (first dimension ``B``, the batch size) and values passed as they are;
:meth:`ForwardArgs.rows` gives one call the keyword arguments of its rows, from the sample each row
belongs to (an ``index_select`` on the device, no host round trip) or from a slice of samples (views).
Without ``forward_kwargs`` every call gets the same empty mapping: no work per chunk.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import torch
from torch import nn

from netsight.capture import unwrap
from netsight.errors import ArgumentError

__all__ = ["ForwardArgs", "NO_ARGS", "NO_KW", "forward_args", "merged_inputs"]

#: The keyword arguments of a call without ``forward_kwargs``.
NO_KW: Mapping[str, Any] = MappingProxyType({})


class ForwardArgs(Mapping[str, Any]):
    """The keyword arguments of a batch's model calls, split into per-sample tensors and the rest.

    A mapping of every argument (so that it passes wherever ``forward_kwargs`` is taken: SmoothGrad
    hands its base method the arguments of the noisy copies this way, already split).
    """

    __slots__ = ("_fixed", "_per_sample", "batch")

    def __init__(
        self, fixed: Mapping[str, Any], per_sample: dict[str, torch.Tensor], batch: int | None
    ) -> None:
        self._fixed = fixed  # passed as they are to every call
        self._per_sample = per_sample  # [B, ...] each, on the inputs' device
        self.batch = batch  # B (None when there is nothing per sample to align)

    def __getitem__(self, key: str) -> Any:
        return self._per_sample[key] if key in self._per_sample else self._fixed[key]

    def __iter__(self) -> Iterator[str]:
        yield from self._fixed
        yield from self._per_sample

    def __len__(self) -> int:
        return len(self._fixed) + len(self._per_sample)

    def __repr__(self) -> str:
        return f"ForwardArgs(per_sample={sorted(self._per_sample)}, fixed={sorted(self._fixed)})"

    @property
    def fixed(self) -> Mapping[str, Any]:
        """The values passed as they are to every call, by name."""
        return self._fixed

    @property
    def per_sample(self) -> Mapping[str, torch.Tensor]:
        """The per-sample tensors ``[B, ...]``, by name."""
        return self._per_sample

    def with_rows(self, names: Sequence[str], tensors: Sequence[torch.Tensor]) -> Mapping[str, Any]:
        """The keyword arguments of one call given its rows of the per-sample tensors ``names``."""
        if not names:
            return self._fixed
        return {**self._fixed, **dict(zip(names, tensors))}

    def rows(self, owner: torch.Tensor | slice) -> Mapping[str, Any]:
        """The keyword arguments of one call whose row ``i`` belongs to sample ``owner[i]`` (a long
        tensor on the inputs' device), or whose rows are the samples of a slice."""
        if not self._per_sample:
            return self._fixed
        if isinstance(owner, slice):
            return {**self._fixed, **{k: v[owner] for k, v in self._per_sample.items()}}
        return {**self._fixed, **{k: v.index_select(0, owner) for k, v in self._per_sample.items()}}

    def select(self, index: torch.Tensor) -> ForwardArgs:
        """The arguments of the batch ``x[index]`` (a sub-batch, or repeated samples)."""
        if not self._per_sample:
            return self
        picked = {k: v.index_select(0, index) for k, v in self._per_sample.items()}
        return ForwardArgs(self._fixed, picked, index.numel())

    def key(self) -> tuple[Any, ...]:
        """What may change the shapes a probe forward sees (cache key): names, per-row shapes, dtypes,
        plain values."""
        parts: list[Any] = []
        for k, v in self._fixed.items():
            if isinstance(v, torch.Tensor):
                parts.append((k, tuple(v.shape), v.dtype))
            elif v is None or isinstance(v, (bool, int, float, str)):
                parts.append((k, v))
            else:
                parts.append((k, type(v).__name__))
        parts.extend((k, tuple(v.shape[1:]), v.dtype) for k, v in self._per_sample.items())
        return tuple(parts)


#: No keyword arguments: every call gets the same empty mapping.
NO_ARGS = ForwardArgs(NO_KW, {}, None)


def _checked_mapping(forward_kwargs: Any) -> Mapping[str, Any]:
    if not isinstance(forward_kwargs, Mapping):
        raise ArgumentError(
            f"forward_kwargs: expected a mapping of keyword arguments for model(x, **forward_kwargs), got "
            f"{type(forward_kwargs).__name__} {forward_kwargs!r:.80}. Pass a dict, e.g. "
            "forward_kwargs={'attention_mask': mask}."
        )
    for key in forward_kwargs:
        if not isinstance(key, str):
            raise ArgumentError(
                f"forward_kwargs: every key must be the name of a keyword argument of the model's forward "
                f"(a str), got {type(key).__name__} {key!r}. Pass e.g. forward_kwargs={{'mask': mask}}."
            )
    return forward_kwargs


def _usable(t: torch.Tensor) -> torch.Tensor:
    """A tensor made in inference mode, copied out (autograd cannot save inference tensors)."""
    return t.clone() if t.is_inference() else t


def forward_args(forward_kwargs: Mapping[str, Any] | None, x: torch.Tensor) -> ForwardArgs:
    """Check ``forward_kwargs`` and split it for the batch ``x`` ``[B, ...]``.

    A tensor whose first dimension is ``B`` is per sample (detached; it must be on ``x``'s device);
    every other value (non-tensors, scalars, tensors of another first dimension) is passed as it is.
    A :class:`ForwardArgs` (from another method) is taken as split, if made for ``B`` samples.
    """
    if forward_kwargs is None:
        return NO_ARGS
    b = x.shape[0]
    if isinstance(forward_kwargs, ForwardArgs):
        if forward_kwargs.batch is not None and forward_kwargs.batch != b:
            raise ArgumentError(
                f"forward_kwargs: made for a batch of {forward_kwargs.batch} samples, used with {b}. Pass "
                "the keyword arguments as a dict."
            )
        return forward_kwargs
    given = _checked_mapping(forward_kwargs)
    if not given:
        return NO_ARGS
    fixed: dict[str, Any] = {}
    per_sample: dict[str, torch.Tensor] = {}
    for key, value in given.items():
        if _is_per_sample(key, value, x):
            per_sample[key] = _usable(value.detach())
        else:
            fixed[key] = _usable(value) if isinstance(value, torch.Tensor) else value
    return ForwardArgs(fixed, per_sample, b if per_sample else None)


def _is_per_sample(key: str, value: Any, x: torch.Tensor) -> bool:
    """``value`` is a tensor ``[B, ...]`` for the batch ``x`` ``[B, ...]``; it must be on ``x``'s device."""
    b = x.shape[0]
    if not (isinstance(value, torch.Tensor) and value.dim() >= 1 and value.shape[0] == b):
        return False
    if value.device != x.device:
        raise ArgumentError(
            f"forward_kwargs: {key!r} is a per-sample tensor (first dimension {b}, the batch size) on "
            f"{value.device}, but the inputs are on {x.device}. Move it: "
            f"forward_kwargs={{{key!r}: value.to({str(x.device)!r})}}."
        )
    return True


def _first_tensor(inputs: Any) -> torch.Tensor | None:
    values = inputs.values() if isinstance(inputs, Mapping) else inputs
    if not isinstance(values, (tuple, list)) and not isinstance(inputs, Mapping):
        return None
    return next((v for v in values if isinstance(v, torch.Tensor)), None)


def _first_parameter(model: nn.Module) -> str | None:
    """The name of the first argument of ``model.forward``, if it can be passed by keyword."""
    try:
        params = list(inspect.signature(unwrap(model).forward).parameters.values())
    except (TypeError, ValueError):
        return None
    if params and params[0].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD:
        return params[0].name
    return None


def merged_inputs(
    model: nn.Module, inputs: Any, forward_kwargs: Mapping[str, Any] | None, method: str
) -> Any:
    """The attention methods' inputs with ``forward_kwargs`` in them, for their one forward of the
    whole batch (nothing to expand): a dict of inputs gets the keys added; a tensor becomes
    ``{<name of forward's first argument>: inputs, **forward_kwargs}``."""
    if forward_kwargs is None:
        return inputs
    given = _checked_mapping(forward_kwargs)
    if not given:
        return inputs
    first = inputs if isinstance(inputs, torch.Tensor) else _first_tensor(inputs)
    if first is not None and first.dim() >= 1:
        for key, value in given.items():
            _is_per_sample(key, value, first)  # the same device check as the other methods'
    if isinstance(inputs, Mapping):
        both = sorted(k for k in given if k in inputs)
        if both:
            raise ArgumentError(
                f"forward_kwargs: {', '.join(repr(k) for k in both)} is also a key of the inputs; pass each "
                "keyword argument once, in the inputs or in forward_kwargs."
            )
        return {**inputs, **given}
    name = _first_parameter(model) if isinstance(inputs, torch.Tensor) else None
    if name is None:
        raise ArgumentError(
            f"forward_kwargs: {method} runs the model on a dict of keyword arguments; with inputs of type "
            f"{type(inputs).__name__} it cannot name the input's own argument. Pass "
            "inputs={'input_ids': ids, **forward_kwargs} (your forward's argument names) instead."
        )
    if name in given:
        raise ArgumentError(
            f"forward_kwargs: {name!r} is the model's first argument, which the inputs already fill; "
            "remove it from forward_kwargs."
        )
    return {name: inputs, **given}
