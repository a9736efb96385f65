"""Readers read while a writer writes: every answer is consistent, nothing blocks or fails."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import torch

import netsight as ns
from netsight import store


def test_reader_threads_read_while_the_writer_writes(tmp_path: Path) -> None:
    layers = [f"blocks.{i}" for i in range(30)]
    run = ns.open_run(tmp_path, name="live", commit_interval=0.05)
    run.log({"loss": 0.0}, step=0)
    run.log_layers(0, layers, ["g"], torch.zeros(30, 1))
    run.flush()
    reader = store.open(tmp_path).run("live")
    errors: list[BaseException] = []
    seen: list[int] = []
    stop = threading.Event()

    def read() -> None:
        try:
            last = -1
            cursor = 0
            while not stop.is_set():
                names, cols, mat = reader.layer_matrix("g", max_steps=64)
                assert names == layers
                assert 1 <= cols.shape[0] <= 64
                # value at each layer = step, so a column's max is below the next column's first step
                nxt = np.append(cols[1:], np.iinfo(np.int64).max)
                assert np.all(mat[0] >= cols)
                assert np.all(mat[0] < nxt)
                steps, values = reader.series("loss", max_points=50)
                assert np.array_equal(values, steps.astype(np.float64))
                assert steps[-1] >= last  # never goes back in time
                last = int(steps[-1])
                cursor, _ = reader.changes_since(cursor)
                seen.append(last)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=read) for _ in range(2)]
    for t in threads:
        t.start()
    for s in range(1, 6000):
        run.log({"loss": torch.tensor(float(s))}, step=s)
        run.log_layers(s, layers, ["g"], torch.full((30, 1), float(s)))
    run.close()
    stop.set()
    for t in threads:
        t.join(30)
    assert not errors, errors[0]
    assert len(seen) > 5
    assert seen[0] < 5999  # the readers saw the run while it was being written
    assert reader.series("loss", max_points=10_000)[0].tolist() == list(range(6000))
