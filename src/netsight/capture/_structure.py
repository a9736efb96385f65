"""Flatten a module's output (tensors in tuples, lists, dicts, dataclasses, ModelOutput) and rebuild it."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import torch

Rebuild = Callable[[list[Any]], Any]


def flatten(obj: Any) -> tuple[list[torch.Tensor | None], Rebuild]:
    """The tensors inside ``obj`` in a fixed order, and a function that puts new leaves back.

    Non-tensor leaves (ints, strings, None) are kept as they are and do not appear in the list.
    """
    leaves: list[torch.Tensor | None] = []

    def walk(o: Any) -> Callable[[list[Any]], Any]:
        if isinstance(o, torch.Tensor):
            i = len(leaves)
            leaves.append(o)
            return lambda new: new[i]
        if isinstance(o, Mapping):
            keys = list(o.keys())
            subs = [walk(o[k]) for k in keys]
            mcls = type(o)

            def rebuild_map(new: list[Any]) -> Any:
                items = {k: s(new) for k, s in zip(keys, subs)}
                try:
                    return mcls(**items) if mcls is not dict else items
                except TypeError:
                    return dict(items)

            return rebuild_map
        if dataclasses.is_dataclass(o) and not isinstance(o, type):
            names = [f.name for f in dataclasses.fields(o) if hasattr(o, f.name)]
            fsubs = [walk(getattr(o, n)) for n in names]

            def rebuild_dataclass(new: list[Any]) -> Any:
                out = copy.copy(o)  # not the constructor: fields with init=False, frozen classes
                for n, s in zip(names, fsubs):
                    object.__setattr__(out, n, s(new))
                return out

            return rebuild_dataclass
        if isinstance(o, (tuple, list)):
            subs = [walk(v) for v in o]
            cls = type(o)
            if isinstance(o, tuple) and hasattr(o, "_fields"):  # namedtuple
                return lambda new: cls(*[s(new) for s in subs])
            if cls in (tuple, list):
                return lambda new: cls(s(new) for s in subs)
            return lambda new: [s(new) for s in subs]
        return lambda new: o

    rebuild = walk(obj)
    return leaves, rebuild


def primary(leaves: list[torch.Tensor | None]) -> int | None:
    """Index of the first floating-point tensor: the one reductions summarise."""
    for i, t in enumerate(leaves):
        if t is not None and t.is_floating_point():
            return i
    return None
