"""Resolve layer selectors (paths, globs, types, predicates, modules) against ``named_modules()``.

Globs work segment by segment on dotted paths: ``*`` matches within one segment (``blocks.*.attn``,
``layer*.0.conv1``), ``**`` matches any number of segments (``**.conv1``, ``features.**``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache
from typing import Union

from torch import nn

from ..errors import ArgumentError, CaptureError, SelectorError, closest

Predicate = Callable[[str, nn.Module], bool]
Selector = Union[str, type[nn.Module], nn.Module, Predicate]  # noqa: UP007 - runtime alias (3.10)
Layers = Union[Selector, Sequence[Selector], None]  # noqa: UP007 - runtime alias (3.10)

_WRAPPERS = ("DataParallel", "DistributedDataParallel", "FullyShardedDataParallel")


_CHECKED: ContextVar[dict[int, tuple[nn.Module, nn.Module]] | None] = ContextVar(
    "netsight_unwrapped", default=None
)


@contextmanager
def unwrap_once() -> Iterator[None]:
    """Within this block, :func:`unwrap` checks each model once (one operation, such as an
    explanation, calls it from several helpers; the walk over every module costs ~0.1 ms on a ResNet-50)."""
    token = _CHECKED.set({})
    try:
        yield
    finally:
        _CHECKED.reset(token)


def unwrap(model: nn.Module) -> nn.Module:
    """The model whose module paths name layers: inside DataParallel/DDP (no ``module.`` prefix).

    Refuses a ``torch.compile``d model, whose compiled code would run without the hooks.
    """
    checked = _CHECKED.get()
    if checked is not None:
        hit = checked.get(id(model))
        if hit is not None and hit[0] is model:
            return hit[1]
        root = _unwrap(model)
        checked[id(model)] = (model, root)
        return root
    return _unwrap(model)


def _unwrap(model: nn.Module) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise ArgumentError(
            f"model: expected a torch.nn.Module, got {type(model).__name__}. "
            "Pass the network itself (an nn.Module instance)."
        )
    while type(model).__name__ in _WRAPPERS and isinstance(getattr(model, "module", None), nn.Module):
        inner = model.module
        assert isinstance(inner, nn.Module)
        model = inner
    for module in model.modules():
        compiled = type(module).__name__ == "OptimizedModule" or (
            getattr(module, "_compiled_call_impl", None) is not None
        )
        if compiled:
            name = next(n for n, m in model.named_modules() if m is module)
            where = f"submodule {name!r}" if name else "the model"
            raise CaptureError(
                f"model: {where} is compiled with torch.compile, and compiled code does not run "
                "netsight's hooks, so a capture would be silently wrong. Capture the original module "
                "instead (`model._orig_mod` for torch.compile(model)), or compile after capturing."
            )
    return model


def strip_prefix(name: str) -> str:
    """A path without the ``module.`` prefixes that DataParallel/DDP add."""
    while name.startswith("module."):
        name = name[len("module.") :]
    return name


@lru_cache(maxsize=512)
def _glob_regex(pattern: str) -> re.Pattern[str]:
    out = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            # '**.' at a segment start matches zero or more whole segments
            if pattern.startswith("**.", i):
                out.append(r"(?:[^.]+\.)*")
                i += 3
                continue
            out.append(r".*")
            i += 2
            continue
        if c == "*":
            out.append(r"[^.]*")
        elif c == "?":
            out.append(r"[^.]")
        elif c == "[":
            j = pattern.find("]", i)
            if j == -1:
                out.append(re.escape(c))
            else:
                out.append(pattern[i : j + 1])
                i = j + 1
                continue
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("^" + "".join(out) + "$")


def is_glob(pattern: str) -> bool:
    return any(ch in pattern for ch in "*?[")


def glob_match(pattern: str, name: str) -> bool:
    """True when the dotted path ``name`` matches ``pattern`` (segment-wise glob)."""
    return bool(_glob_regex(pattern).match(name))


def _describe(sel: object) -> str:
    if isinstance(sel, type):
        return sel.__name__
    return repr(sel)


def resolve(
    model: nn.Module, layers: Layers = None, *, argument: str = "layers"
) -> list[tuple[str, nn.Module]]:
    """The ``(path, module)`` pairs that ``layers`` selects, in ``named_modules()`` order.

    ``None`` selects every leaf module (one with no children). Each selector must match at least one
    module; a miss raises :class:`SelectorError` naming the nearest paths. A path that names a shared
    module by a second name (``model.b = model.a``), which ``named_modules()`` lists once, is kept under
    the name given, after the others. A name holding glob characters (``ModuleDict({"x[1]": ...})``)
    matches itself before it is read as a glob.
    """
    if isinstance(layers, str) and layers:
        exact = _alias(model, strip_prefix(layers))  # an exact path: no need to list every module
        if exact is not None:
            return [exact]
    named = [(n, m) for n, m in model.named_modules() if n]
    if not named:
        named = [("", model)]
    if layers is None:
        return [(n, m) for n, m in named if not any(True for _ in m.children())] or named
    selectors: Sequence[Selector]
    if isinstance(layers, (str, type, nn.Module)) or (callable(layers) and not isinstance(layers, Sequence)):
        selectors = [layers]
    elif isinstance(layers, Sequence):
        selectors = list(layers)
        if not selectors:
            raise SelectorError(f"{argument}: got an empty list. Pass None for every leaf module.")
    else:
        raise ArgumentError(
            f"{argument}: cannot select layers with {type(layers).__name__} {layers!r}. Pass a module "
            "path ('layer4.1.conv2'), a glob ('blocks.*.attn'), a module type (nn.Conv2d), a predicate "
            "(lambda name, module: ...), or a list of them."
        )
    names = [n for n, _ in named]
    chosen: set[str] = set()
    aliases: list[tuple[str, nn.Module]] = []
    for sel in selectors:
        hits = _match(named, sel, argument)
        if not hits and isinstance(sel, str):
            alias = _alias(model, strip_prefix(sel))
            if alias is not None:  # a second name of a shared module: kept under the name asked for
                if all(n != alias[0] for n, _ in aliases):  # (once, however often it is asked for)
                    aliases.append(alias)
                continue
        if not hits:
            if isinstance(sel, str):
                key = strip_prefix(sel)
                near = closest(key.replace("*", ""), names) if is_glob(key) else closest(key, names)
                hint = f" Nearest: {', '.join(near)}." if near else ""
                kind = "glob" if is_glob(key) else "path"
                raise SelectorError(
                    f"{argument}: the {kind} {sel!r} matches no module of {type(model).__name__}.{hint} "
                    "See the paths with `[n for n, _ in model.named_modules()]`."
                )
            if isinstance(sel, nn.Module):  # its repr can be the whole network: name it by type
                what = (
                    "is the model itself; select its submodules (the model's output is what model(x) returns)"
                    if sel is model
                    else f"is a {type(sel).__name__} that is not a submodule of {type(model).__name__}; "
                    "pass one of the model's own modules or its path"
                )
                raise SelectorError(f"{argument}: the module given {what}.")
            types = sorted({type(m).__name__ for _, m in named})
            raise SelectorError(
                f"{argument}: {_describe(sel)} matches no module of {type(model).__name__}. "
                f"Module types present: {', '.join(types[:12])}{' ...' if len(types) > 12 else ''}."
            )
        chosen.update(hits)
    return [(n, m) for n, m in named if n in chosen] + aliases


def _alias(model: nn.Module, key: str) -> tuple[str, nn.Module] | None:
    """``(key, module)`` when ``key`` reaches a submodule that ``named_modules()`` lists by another path."""
    if not key:
        return None
    try:
        found = model.get_submodule(key)
    except AttributeError:
        return None
    return (key, found) if found is not model else None


def _match(named: list[tuple[str, nn.Module]], sel: Selector, argument: str) -> list[str]:
    if isinstance(sel, str):
        key = strip_prefix(sel)
        exact = [n for n, _ in named if n == key]
        if exact or not is_glob(key):  # a name may hold glob characters itself (ModuleDict({"x[1]": ...}))
            return exact
        rx = _glob_regex(key)
        return [n for n, _ in named if rx.match(n)]
    if isinstance(sel, type):
        if not issubclass(sel, nn.Module):
            raise ArgumentError(
                f"{argument}: the type {sel.__name__} is not an nn.Module subclass. Pass a module type "
                "such as nn.Conv2d."
            )
        return [n for n, m in named if isinstance(m, sel)]
    if isinstance(sel, nn.Module):
        return [n for n, m in named if m is sel]
    if callable(sel):
        return [n for n, m in named if sel(n, m)]
    raise ArgumentError(
        f"{argument}: cannot select layers with {type(sel).__name__} {sel!r}. Pass a path, a glob, a "
        "module type, a module or a predicate."
    )
