"""The typer application every ``netsight`` command registers on (``from ._app import app``).

Each command lives in its own module of this package and adds itself with ``@app.command("name")``;
:func:`netsight.cli.main` imports them all and runs the app. Shared helpers for commands live here too:
:func:`fail` prints one red line and exits with code 1, :func:`run_command` wraps a command body so that
netsight's errors read as one line (``--debug`` shows the traceback).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import typer

__all__ = ["app", "console", "debug_enabled", "fail", "resolve_methods", "run_command", "set_debug"]

T = TypeVar("T")

app = typer.Typer(
    name="netsight",
    help=(
        "See inside PyTorch networks: train the demo, explain images, browse runs, write reports.\n\n"
        "Start with `netsight demo` (trains a small CNN on the MNIST digits with the dashboard on). "
        "Every command has `--help` with examples."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)


def _env_debug() -> bool:
    return os.environ.get("NETSIGHT_DEBUG", "") not in ("", "0")


_STATE = {"debug": _env_debug()}


@app.callback()
def _root(
    debug: bool = typer.Option(
        False, "--debug", help="Show the full Python traceback when a command fails.", is_eager=True
    ),
) -> None:
    """See inside PyTorch networks."""
    _STATE["debug"] = debug or _env_debug()


def set_debug(on: bool) -> None:
    """Turn traceback printing on or off (``--debug``)."""
    _STATE["debug"] = on


def debug_enabled() -> bool:
    """Whether ``--debug`` (or ``NETSIGHT_DEBUG=1``) asked for tracebacks."""
    return _STATE["debug"]


def console(*, stderr: bool = False) -> Any:
    """A rich console that never wraps a long line (paths stay whole when output is piped or logged)."""
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def resolve_methods(names: list[str], option: str = "--method") -> list[Any]:
    """The registered methods ``names`` name, in order; a miss fails naming the option and the nearest
    names, and points at ``netsight methods`` (the CLI's list, not the Python API's)."""
    return [_method(name, option) for name in names]


def _method(name: str, option: str) -> Any:
    import netsight as ns
    from netsight.errors import UnknownNameError, closest

    try:
        return ns.get_method(name)
    except UnknownNameError:
        near = closest(name, ns.list_methods())
        hint = f" Did you mean {', '.join(repr(n) for n in near)}?" if near else ""
        fail(f"{option}: unknown method {name!r}.{hint} Run 'netsight methods' to list them all.")


def fail(message: str) -> NoReturn:
    """Print ``message`` as one red line on stderr and exit with code 1."""
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True, highlight=False, soft_wrap=True).print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(code=1)


def run_command(body: Callable[[], T]) -> T:
    """Run a command body; turn a failure into one clear line (or re-raise it under ``--debug``).

    netsight's own errors (:class:`netsight.errors.NetsightError`), bad files and missing optional
    packages are expected failures: their message is what the user needs. Anything else is reported
    with its type so it can be searched for; ``--debug`` shows the traceback.
    """
    from netsight.errors import NetsightError

    try:
        return body()
    except (typer.Exit, typer.Abort, KeyboardInterrupt):
        raise
    except Exception as exc:
        if debug_enabled():
            raise
        if isinstance(exc, NetsightError):
            fail(f"{exc}")
        if isinstance(exc, ModuleNotFoundError):
            fail(f"{exc}. Install the missing package (pip install 'netsight[all]') and try again.")
        if isinstance(exc, OSError):
            fail(f"{exc}")
        fail(f"{type(exc).__name__}: {exc} (run with --debug for the traceback)")
