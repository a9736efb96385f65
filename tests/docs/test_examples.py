"""Every code example in the docs is a file in docs/examples/, and every file runs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"
EXAMPLES = sorted((DOCS / "examples").glob("*.py"))
FENCE = re.compile(r"```python\n(.*?)```", re.S)


def _blocks() -> list[tuple[str, str]]:
    pages = [md for md in sorted(DOCS.rglob("*.md")) if "reference" not in md.relative_to(DOCS).parts]
    pages.append(DOCS.parent / "README.md")  # the README's tour is an example too
    return [
        (f"{md.relative_to(DOCS.parent)}#{i}", block)
        for md in pages  # (docs/reference is generated from docstrings)
        for i, block in enumerate(FENCE.findall(md.read_text(encoding="utf-8")))
    ]


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 6
    assert len(_blocks()) >= 8


def test_reference_builds(tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, str(DOCS / "build_reference.py"), "--out", str(tmp_path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    api = (tmp_path / "api.md").read_text(encoding="utf-8")
    assert "netsight.demo.run" in api
    assert "### `netsight.explain.explain" in api
    methods = (tmp_path / "methods.md").read_text(encoding="utf-8")
    import netsight as ns

    for name in ns.list_methods():
        assert f"`{name}`" in methods
    cli = (tmp_path / "cli.md").read_text(encoding="utf-8")
    for command in ("demo", "explain", "methods", "report"):
        assert f"## netsight {command}" in cli


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs(path: Path, tmp_path: Path) -> None:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    res = subprocess.run(
        [sys.executable, str(path)],
        check=False,
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    ours = [ln for ln in res.stderr.splitlines() if "Warning" in ln and "netsight" in ln]
    assert ours == [], ours  # netsight's own code warns about nothing in its examples


@pytest.mark.parametrize(("where", "block"), _blocks(), ids=[w for w, _ in _blocks()])
def test_docs_code_is_in_an_example_file(where: str, block: str) -> None:
    """A Python block in the docs is a verbatim excerpt of a file the test above runs."""
    sources = [p.read_text(encoding="utf-8") for p in EXAMPLES]
    assert any(block in src for src in sources), f"{where}: not found verbatim in docs/examples/*.py"
