"""The method registry: every attribution method registers itself here by name.

A method is a function ``fn(model, inputs, target, *, layer=None, **options) -> Explanation`` in its
own file, decorated with :func:`register`. ``explain/__init__.py`` imports every method file, so the
registry is filled explicitly, never by import-order luck, and the conformance tests run every entry.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from netsight.errors import ArgumentError, UnknownNameError, closest

if TYPE_CHECKING:  # pragma: no cover
    from ._explanation import Explanation

__all__ = ["KINDS", "INPUT_KINDS", "MethodInfo", "get_method", "list_methods", "register"]

KINDS = ("gradient", "layer", "perturbation", "attention")
#: What inputs a method takes; the conformance test keeps one example model and input per kind.
#: "image": a CNN on ``[B, C, H, W]`` images; "tokens": a text classifier on ``[B, T]`` token ids;
#: "tabular": a classifier on ``[B, F]`` features; "transformer": a (ViT / BERT-like) transformer whose
#: attention modules can be captured.
INPUT_KINDS = ("image", "tokens", "tabular", "transformer")

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class MethodInfo:
    """One registered method.

    Attributes:
        name: the registry key (``"grad_cam"``).
        kind: ``"gradient"`` | ``"layer"`` | ``"perturbation"`` | ``"attention"``.
        passes: the cost in words, e.g. ``"1 forward + 1 backward"``, ``"steps x (fwd + bwd)"``.
        fn: ``fn(model, inputs, target, *, layer=None, **options) -> Explanation``.
        summary: one line saying what it computes.
        paper: the citation the method implements.
        needs_layer: the method attributes to a layer (a default one is found when ``layer=None``).
        inputs: the kind of input it explains, one of :data:`INPUT_KINDS` (``"image"`` by default);
            methods that accept several kinds list the main one, the conformance test uses it.
    """

    name: str
    kind: str
    passes: str
    fn: Callable[..., Explanation]
    summary: str
    paper: str
    needs_layer: bool = False
    inputs: str = "image"


_REGISTRY: dict[str, MethodInfo] = {}


def register(
    name: str,
    *,
    kind: str,
    passes: str,
    summary: str,
    paper: str,
    needs_layer: bool = False,
    inputs: str = "image",
) -> Callable[[F], F]:
    """Decorator: register ``fn`` under ``name``. A second registration of the same name is an error."""
    if kind not in KINDS:
        raise ArgumentError(f"kind: {kind!r} is not a method kind; use one of {', '.join(KINDS)}.")
    if inputs not in INPUT_KINDS:
        raise ArgumentError(f"inputs: {inputs!r} is not an input kind; use one of {', '.join(INPUT_KINDS)}.")

    def deco(fn: F) -> F:
        old = _REGISTRY.get(name)
        if old is not None and old.fn is not fn:
            raise ArgumentError(
                f"name: a method called {name!r} is already registered (by {old.fn.__module__}). "
                "Pick another name."
            )
        _REGISTRY[name] = MethodInfo(
            name=name,
            kind=kind,
            passes=passes,
            fn=fn,
            summary=summary,
            paper=paper,
            needs_layer=needs_layer,
            inputs=inputs,
        )
        return fn

    return deco


def get_method(name: str) -> MethodInfo:
    """The registered method called ``name``; a miss suggests the nearest names."""
    if not isinstance(name, str):
        raise ArgumentError(f"method: expected a method name (str), got {type(name).__name__} {name!r}.")
    try:
        return _REGISTRY[name]
    except KeyError:
        key = name.strip().lower().replace("-", "_").replace(" ", "_")
        if key in _REGISTRY:
            return _REGISTRY[key]
        near = closest(name, sorted(_REGISTRY)) or closest(key, sorted(_REGISTRY))
        hint = f" Did you mean {', '.join(repr(n) for n in near)}?" if near else ""
        raise UnknownNameError(
            f"Unknown method {name!r}.{hint} See netsight.list_methods() for every method."
        ) from None


def list_methods(pattern: str = "*", kind: str | None = None) -> list[str]:
    """Registered method names matching the ``fnmatch`` ``pattern`` (and ``kind``), sorted."""
    if kind is not None and kind not in KINDS:
        raise ArgumentError(f"kind: {kind!r} is not a method kind; use one of {', '.join(KINDS)} or None.")
    return sorted(
        n
        for n, info in _REGISTRY.items()
        if fnmatch.fnmatchcase(n, pattern) and (kind is None or info.kind == kind)
    )
