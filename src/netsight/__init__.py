"""netsight: see inside PyTorch networks.

Capture activations and gradients (:func:`capture`), explain predictions (:func:`explain`), look at
attention (:func:`attention`), watch a network train (:func:`watch`, :func:`open_run`) and browse it all
in a live dashboard (:func:`serve`). Heavy parts are imported on first use.

Note: ``ns.capture``, ``ns.explain`` and ``ns.attention`` are the functions; their packages are
reached with ``from netsight.capture import reducers`` and the like.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from . import errors
from ._version import __version__
from .capture import Capture, Hooks, Record, capture, hooks_on, reducers

if TYPE_CHECKING:  # pragma: no cover - names for type checkers and IDEs
    from . import render, store
    from .attention import AttentionMaps, attention
    from .explain import Explanation, explain, get_method, list_methods
    from .monitor import Alert, Monitor, watch
    from .server import serve
    from .store import open_run

__all__ = [
    "Alert",
    "AttentionMaps",
    "Capture",
    "Explanation",
    "Hooks",
    "Monitor",
    "Record",
    "__version__",
    "attention",
    "capture",
    "errors",
    "explain",
    "get_method",
    "hooks_on",
    "list_methods",
    "open_run",
    "reducers",
    "render",
    "serve",
    "store",
    "watch",
]

_LAZY: dict[str, tuple[str, str | None]] = {
    "render": ("netsight.render", None),
    "store": ("netsight.store", None),
    "open_run": ("netsight.store", "open_run"),
    "explain": ("netsight.explain", "explain"),
    "Explanation": ("netsight.explain", "Explanation"),
    "list_methods": ("netsight.explain", "list_methods"),
    "get_method": ("netsight.explain", "get_method"),
    "attention": ("netsight.attention", "attention"),
    "AttentionMaps": ("netsight.attention", "AttentionMaps"),
    "watch": ("netsight.monitor", "watch"),
    "Monitor": ("netsight.monitor", "Monitor"),
    "Alert": ("netsight.monitor", "Alert"),
    "serve": ("netsight.server", "serve"),
}


def __getattr__(name: str) -> Any:
    try:
        module_name, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'netsight' has no attribute {name!r}") from None
    module = importlib.import_module(module_name)
    value = module if attr is None else getattr(module, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
