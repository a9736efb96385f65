"""``netsight report RUN --store DIR --out report.html``: one self-contained HTML file of a stored run."""

from __future__ import annotations

from pathlib import Path

import typer

from ._app import app, fail, run_command

__all__ = ["report"]


@app.command("report")
def report(
    *,
    run: str = typer.Argument(
        ..., help="The run's name (see the dashboard, or store.runs()).", show_default=False
    ),
    store: Path = typer.Option(Path("netsight-runs"), "--store", "-s", help="The run store directory."),
    out: Path | None = typer.Option(
        None,
        "--out",
        "-o",
        help="The HTML file to write (default: RUN-report.html in this folder, or in --out if a folder).",
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

        default = f"{Path(run).name}-report.html"
        path = out if out is not None else Path(default)
        if path.is_dir():
            path /= default
        with Console(stderr=True).status(f"writing the report of {run!r}"):
            try:
                written = write_report(store, run, path, title=title)
            except OSError as exc:
                if exc.filename is None or Path(exc.filename) not in (path, *path.parents):
                    raise
                fail(f"--out: cannot write {str(path)!r} ({exc.strerror or exc}); pass a writable file path.")
        Console(highlight=False).print(
            f"report: [bold]{written}[/bold] ({written.stat().st_size / 1e6:.1f} MB)"
        )

    run_command(body)
