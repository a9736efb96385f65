"""``netsight report RUN --store DIR --out report.html``: one self-contained HTML file of a stored run."""

from __future__ import annotations

from pathlib import Path

import typer

from ._app import app, run_command

__all__ = ["report"]


@app.command("report")
def report(
    *,
    run: str = typer.Argument(
        ..., help="The run's name (see the dashboard, or store.runs()).", show_default=False
    ),
    store: Path = typer.Option(Path("netsight-runs"), "--store", "-s", help="The run store directory."),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="The HTML file to write (default: RUN-report.html in this folder)."
    ),
    title: str | None = typer.Option(None, "--title", help="Page title (default: the run's name)."),
) -> None:
    """Write one self-contained HTML report of a stored run: images inline, no network needed to view it.

    It holds the run's configuration, its scalars, the gradient-flow heatmap (layer x step), the
    activation statistics, the alerts, the explanations, the activation maps and the attention views.

    **Examples**

    ```
    netsight report demo-mnist                                  # from ./netsight-runs
    netsight report mnist-cnn --store runs/ --out mnist.html
    ```
    """

    def body() -> None:
        from rich.console import Console

        from netsight.render.report import write_report

        path = out if out is not None else Path(f"{run}-report.html")
        with Console(stderr=True).status(f"writing the report of {run!r}"):
            written = write_report(store, run, path, title=title)
        Console(highlight=False).print(
            f"report: [bold]{written}[/bold] ({written.stat().st_size / 1e6:.1f} MB)"
        )

    run_command(body)
