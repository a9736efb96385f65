"""netsight's command line: ``netsight demo | explain | methods | report | runs | serve``.

One module per command; each registers itself on the typer app in :mod:`netsight.cli._app`. Importing
this package imports every command module explicitly (so the command list never depends on import
order); ``main`` runs the app.
"""

from __future__ import annotations

import importlib
import importlib.util

from ._app import app

__all__ = ["app", "main"]

_COMMANDS = ("demo", "explain", "methods", "report", "runs", "serve")


def _load_commands() -> None:
    for name in _COMMANDS:
        module = f"{__name__}.{name}"
        if importlib.util.find_spec(module) is not None:
            importlib.import_module(module)


_load_commands()


def main() -> None:
    """Entry point of the ``netsight`` console script and of ``python -m netsight``."""
    app()
