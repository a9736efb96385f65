"""``netsight methods [PATTERN]``: the registered explanation methods, their kind and cost in passes."""

from __future__ import annotations

import typer

from ._app import app, fail, run_command

__all__ = ["methods"]


@app.command("methods")
def methods(
    pattern: str = typer.Argument("*", help="Glob over method names, e.g. '*cam*' or 'integrated*'."),
    kind: str | None = typer.Option(
        None, "--kind", "-k", help="Only this kind: gradient, layer, perturbation or attention."
    ),
) -> None:
    """List the registered explanation methods: name, kind, cost in passes, what each computes.

    **Examples**

    ```
    netsight methods                      # every method
    netsight methods '*cam*'              # the CAM family
    netsight methods --kind perturbation
    ```

    Use a name with `netsight explain --method NAME` or `ns.explain(model, x, method=NAME)`.
    """

    def body() -> None:
        from rich.console import Console
        from rich.table import Table

        from netsight.errors import closest
        from netsight.explain import get_method, list_methods

        names = list_methods(pattern, kind=kind)
        if not names:
            near = [] if any(c in pattern for c in "*?[") else closest(pattern, list_methods(kind=kind))
            hint = f" Did you mean {', '.join(repr(n) for n in near)}?" if near else ""
            fail(
                f"pattern: no registered method matches {pattern!r}"
                + (f" of kind {kind!r}" if kind else "")
                + f".{hint} Run 'netsight methods' to see them all."
            )
        table = Table(title=f"{len(names)} explanation method{'s' if len(names) != 1 else ''}")
        table.add_column("method", style="cyan", no_wrap=True)
        table.add_column("kind")
        table.add_column("cost in passes")
        table.add_column("what it computes")
        for name in names:
            info = get_method(name)
            table.add_row(info.name, info.kind, info.passes, info.summary)
        Console(soft_wrap=False).print(table)

    run_command(body)
