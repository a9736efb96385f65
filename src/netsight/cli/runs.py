"""``netsight runs [--store DIR]``: the runs of a store, with their status, steps and last update."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ._app import app, console, fail, run_command

__all__ = ["open_store", "runs"]


def open_store(store: Path) -> Any:
    """``ns.store.open(store)``, failing with one line naming ``--store`` when there is no store there."""
    import netsight as ns

    if not store.exists():
        fail(
            f"--store: {str(store)!r} does not exist; pass the folder the runs were written to "
            "(ns.open_run(DIR, ...) or netsight demo --store DIR; netsight demo's default is netsight-runs)."
        )
    if not store.is_dir():
        fail(f"--store: {str(store)!r} is a file; pass the folder that holds the runs.")
    try:
        return ns.store.open(store)
    except ns.errors.StoreError:  # the only one left: a folder that holds no netsight runs
        fail(
            f"--store: {str(store)!r} is not a netsight run store (no netsight-store.json, no *.sqlite run "
            "files); pass the folder the runs were written to."
        )


@app.command("runs")
def runs(
    *,
    store: Path = typer.Option(Path("netsight-runs"), "--store", "-s", help="The run store directory."),
) -> None:
    """List the runs of a store: name, status, last step and last update, oldest first.

    **Examples**

    ```
    netsight runs                       # ./netsight-runs, where netsight demo writes
    netsight runs --store runs/
    ```

    Then `netsight report NAME --store DIR` writes a run's report; `netsight serve DIR` shows them live.
    """

    def body() -> None:
        import time

        from rich.table import Table

        st = open_store(store)
        infos = st.runs()
        if not infos:
            console(stderr=True).print(f"no runs in {store} yet")
            return
        table = Table(title=f"{len(infos)} run{'s' if len(infos) != 1 else ''} in {store}")
        table.add_column("run", style="cyan", no_wrap=True)
        table.add_column("status")
        table.add_column("steps", justify="right")
        table.add_column("last update", no_wrap=True)
        for info in infos:
            steps = "-" if info.last_step is None else str(info.last_step)
            updated = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.updated))
            table.add_row(info.name, info.status, steps, updated)
        console().print(table)

    run_command(body)
