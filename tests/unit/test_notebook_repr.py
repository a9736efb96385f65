"""Stored runs render themselves in Jupyter, with every user string escaped."""

from __future__ import annotations

from pathlib import Path

import netsight as ns


def test_run_reader_repr_html_escapes_and_shows_scalars(tmp_path: Path) -> None:
    with ns.open_run(tmp_path, name="nb") as run:
        for step in range(4):
            run.log({"<b>loss</b>": 1.0 / (step + 1)}, step=step)
    html = ns.store.open(tmp_path).run("nb")._repr_html_()
    assert "&lt;b&gt;loss&lt;/b&gt;" in html
    assert "<b>loss</b>" not in html
    assert "nb" in html
