"""Schema versions, migrations, writer-error propagation and back-pressure."""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import netsight as ns
from netsight import store
from netsight.errors import StoreError
from netsight.store import _schema


def _v1_run(path: Path) -> None:
    """A run file as netsight's schema version 1 left it (no change log)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN")
    _schema._script(_schema._V1)(conn)
    conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '1')")
    conn.execute(
        "INSERT INTO run (id, name, status, config, created, updated, last_step) "
        "VALUES (1, 'old', 'finished', '{}', 0, 0, 4)"
    )
    conn.execute("INSERT INTO scalar_keys (id, key) VALUES (0, 'loss')")
    conn.executemany(
        "INSERT INTO scalars (key_id, step, value) VALUES (0, ?, ?)", [(s, s * 0.5) for s in range(5)]
    )
    conn.execute("COMMIT")
    conn.close()


def test_current_files_carry_the_version(tmp_path: Path) -> None:
    with ns.open_run(tmp_path, name="v") as run:
        run.log({"a": 1.0}, step=0)
    conn = sqlite3.connect(tmp_path / "v.sqlite")
    assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (
        str(store.SCHEMA_VERSION),
    )
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    conn.close()


def test_older_schema_is_refused_by_readers_then_migrated(tmp_path: Path) -> None:
    ns.open_run(tmp_path, name="fresh").close()  # makes tmp_path a store
    _v1_run(tmp_path / "old.sqlite")
    s = store.open(tmp_path)
    with pytest.raises(StoreError, match=r"schema version 1.*netsight\.store\.migrate\("):
        s.run("old")
    assert store.migrate(tmp_path) == ["old"]
    assert store.migrate(tmp_path) == []  # idempotent
    r = store.open(tmp_path).run("old")
    assert r.series("loss")[1].tolist() == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert r.changes_since(0)[0] == 0  # the change log exists (and is empty)


def test_writer_migrates_when_resuming(tmp_path: Path) -> None:
    ns.open_run(tmp_path, name="fresh").close()
    _v1_run(tmp_path / "old.sqlite")
    with ns.open_run(tmp_path, name="old", resume=True) as run:
        assert run.step == 4
        run.log({"loss": 9.0})  # step 5
    r = store.open(tmp_path).run("old")
    assert r.series("loss")[0].tolist() == [0, 1, 2, 3, 4, 5]
    assert r.info.status == "finished"


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    with ns.open_run(tmp_path, name="new") as run:
        run.log({"a": 1.0}, step=0)
    conn = sqlite3.connect(tmp_path / "new.sqlite")
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="schema version 99, newer than"):
        store.open(tmp_path).run("new")
    with pytest.raises(StoreError, match="schema version 99, newer than"):
        ns.open_run(tmp_path, name="new", resume=True)


def test_writer_errors_are_logged_and_raised_at_the_next_call(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run = ns.open_run(tmp_path, name="e")
    run.log({"a": 1.0}, step=0)
    run.flush()
    with caplog.at_level(logging.ERROR, logger="netsight"):
        run.log_tensor(1, "bad", torch.empty(3, device="meta"))  # fails only when moved to the host
        deadline = time.monotonic() + 10
        while run._error is None and time.monotonic() < deadline:
            time.sleep(0.01)
    assert any(r.name == "netsight" and "writer of run 'e' failed" in r.getMessage() for r in caplog.records)
    with pytest.raises(StoreError, match="writer thread failed") as info:
        run.log({"a": 2.0}, step=2)
    assert info.value.__cause__ is run._error
    with pytest.raises(StoreError, match="marked 'failed'"):
        run.close()
    r = store.open(tmp_path).run("e")
    assert r.info.status == "failed"
    assert r.series("a")[0].tolist() == [0]


def test_a_full_queue_waits_instead_of_failing(tmp_path: Path) -> None:
    names = [f"l{i}" for i in range(50)]
    with ns.open_run(tmp_path, name="q", queue_size=2) as run:
        for s in range(400):
            run.log({"loss": torch.tensor(float(s))}, step=s)
            run.log_layers(s, names, ["m", "n"], torch.full((50, 2), float(s)))
    r = store.open(tmp_path).run("q")
    st, v = r.series("loss", max_points=1000)
    assert st.tolist() == list(range(400))
    assert np.array_equal(v, np.arange(400.0))
    _, cols, mat = r.layer_matrix("n", max_steps=1000)
    assert cols.tolist() == list(range(400))
    assert np.all(mat == np.arange(400.0)[None, :])


def test_scalars_from_several_devices_and_dtypes(tmp_path: Path) -> None:
    with ns.open_run(tmp_path, name="d") as run:
        run.log(
            {
                "f64": torch.tensor(0.1, dtype=torch.float64),
                "f16": torch.tensor(0.5, dtype=torch.float16),
                "i": torch.tensor(7),
                "b": torch.tensor(True),
                "meta_free": 3,
            },
            step=0,
        )
    r = store.open(tmp_path).run("d")
    got = {k: r.series(k)[1][0] for k in r.scalar_keys()}
    assert got == {"f64": 0.1, "f16": 0.5, "i": 7.0, "b": 1.0, "meta_free": 3.0}
