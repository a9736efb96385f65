"""``netsight serve [STORE_DIR]``: the live dashboard of a run store."""

from __future__ import annotations

from pathlib import Path

import typer

from ._app import app, run_command


@app.command("serve")
def serve_command(
    store_dir: Path = typer.Argument(
        Path("netsight-runs"), help="The run store directory (what ns.open_run(...) was given)."
    ),
    host: str = typer.Option(
        "127.0.0.1",
        "--host",
        help="Address to bind. Anything but a loopback address requires a token on every request.",
    ),
    port: int = typer.Option(8765, "--port", help="Port to listen on (0 picks a free one)."),
    token: str = typer.Option(
        None,
        "--token",
        envvar="NETSIGHT_TOKEN",
        help="Token every request must carry. Generated and printed when --host is not loopback.",
        show_default=False,
    ),
    open_browser: bool = typer.Option(False, "--open", help="Open the dashboard in a web browser."),
) -> None:
    """Serve the live dashboard of the runs in STORE_DIR (runs, scalars, gradient flow, ...).

    Examples:

      netsight serve                              # ./netsight-runs at http://127.0.0.1:8765/

      netsight serve runs/ --port 9000 --open

      netsight serve runs/ --host 0.0.0.0         # prints a URL with a generated token
    """
    from netsight.server import serve

    run_command(
        lambda: serve(
            store_dir, host=host, port=port, token=token, background=False, open_browser=open_browser
        )
    )
