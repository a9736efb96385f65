"""``netsight report RUN --store DIR --out report.html``: one self-contained HTML file of a stored run."""

from __future__ import annotations

from pathlib import Path

import typer

from ._app import app, console, fail, run_command

__all__ = ["report"]


@app.command("report")
def report(
    *,
    run: str = typer.Argument(
        ..., help="The run's name ('netsight runs --store DIR' lists them).", show_default=False
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

        from netsight.errors import closest
        from netsight.render.report import write_report

        from .runs import open_store

        st = open_store(store)
        names = st.names()
        if run not in names:
            near = closest(run, names)
            if near:
                hint = f" Did you mean {', '.join(map(repr, near))}?"
            elif names:
                hint = f" It holds {', '.join(map(repr, names[:10]))}{', ...' if len(names) > 10 else ''}."
            else:
                hint = " It holds no runs yet."
            fail(
                f"RUN: no run {run!r} in {str(store)!r}.{hint} "
                f"List them with 'netsight runs --store {store}'."
            )

        default = f"{Path(run).name}-report.html"
        path = out if out is not None else Path(default)
        if path.is_dir():
            path /= default
        with Console(stderr=True).status(f"writing the report of {run!r}"):
            try:
                written = write_report(st, run, path, title=title)
            except OSError as exc:
                if exc.filename is None or Path(exc.filename) not in (path, *path.parents):
                    raise
                fail(f"--out: cannot write {str(path)!r} ({exc.strerror or exc}); pass a writable file path.")
        console().print(f"report: [bold]{written}[/bold] ({written.stat().st_size / 1e6:.1f} MB)")

    run_command(body)
