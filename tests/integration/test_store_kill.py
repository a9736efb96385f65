"""A training process killed with SIGKILL: the run file is intact and holds all but the last second."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import netsight as ns
from netsight import store

CHILD = textwrap.dedent(
    """
    import sys, time
    import torch
    import netsight as ns

    run = ns.open_run(sys.argv[1], name="killed")
    layers = [f"layer{i}" for i in range(20)]
    step = 0
    while True:
        loss = torch.tensor(1.0 / (step + 1))
        run.log({"loss": loss, "step_copy": float(step)}, step=step)
        run.log_layers(step, layers, ["grad_norm", "act_mean"], torch.full((20, 2), float(step)))
        print(step, time.time(), flush=True)
        step += 1
        time.sleep(0.002)
    """
)


@pytest.mark.slow
def test_sigkill_mid_training_loses_at_most_a_second(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    reported: list[tuple[int, float]] = []
    with subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    ) as proc:
        assert proc.stdout is not None
        assert proc.stderr is not None
        try:
            first = None
            for line in proc.stdout:
                step, t = line.split()
                reported.append((int(step), float(t)))
                first = first or float(t)
                if float(t) - first > 2.0 and int(step) > 200:
                    break
            else:
                raise AssertionError(f"child ended early: {proc.stderr.read()}")
            proc.send_signal(signal.SIGKILL)
            killed_at = time.time()
            rest = proc.stdout.read()  # lines the child printed before it died
        finally:
            proc.kill()
            proc.wait()
    for line in rest.splitlines():
        step, t = line.split()
        reported.append((int(step), float(t)))
    assert proc.returncode == -signal.SIGKILL

    path = tmp_path / "killed.sqlite"
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    conn.close()

    must_have = max(s for s, t in reported if t <= killed_at - 1.0)
    r = store.open(tmp_path).run("killed")
    assert r.info.status == "running"  # it never closed
    assert r.info.writing is False  # and nobody writes it: it was interrupted
    steps, values = r.series("loss", max_points=100_000)
    assert steps.tolist()[: must_have + 1] == list(range(must_have + 1))
    assert steps.max() <= reported[-1][0]
    np.testing.assert_allclose(values, 1.0 / (steps + 1), rtol=1e-6)
    _, cols, mat = r.layer_matrix("act_mean", max_steps=100_000)
    assert cols.tolist()[: must_have + 1] == list(range(must_have + 1))
    assert np.all(mat == cols[None, :].astype(np.float64))
    assert r.info.last_step >= must_have

    # the crashed run can be resumed; its coarse levels continue exactly
    run_last = r.info.last_step
    last = int(cols.max())  # the layer rows may end a step before the scalars (killed in between)
    with ns.open_run(tmp_path, name="killed", resume=True) as run:
        assert run.step == run_last
        for s in range(last + 1, last + 301):
            run.log_layers(s, [f"layer{i}" for i in range(20)], ["act_mean"], np.full((20, 1), float(s)))
    r = store.open(tmp_path).run("killed")
    _, cols, mat = r.layer_matrix("act_mean", max_steps=50, agg="max")
    bounds = [*cols[1:].tolist(), last + 301]
    np.testing.assert_array_equal(mat[0], np.array(bounds) - 1)  # max of each column is its last step
    _, cols, mean = r.layer_matrix("act_mean", max_steps=50, agg="mean")
    np.testing.assert_allclose(mean[0], (cols + np.array(bounds) - 1) / 2, rtol=1e-5)


def test_a_run_never_closed_is_flushed_at_exit_and_left_running(tmp_path: Path) -> None:
    code = textwrap.dedent(
        """
        import sys
        import torch
        import netsight as ns

        run = ns.open_run(sys.argv[1], name="unclosed")
        for step in range(50):
            run.log({"loss": torch.tensor(float(step))}, step=step)
        raise SystemExit(3)  # no close(): the process ends as if the script had failed
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 3, done.stderr
    r = store.open(tmp_path).run("unclosed")
    assert r.series("loss")[0].tolist() == list(range(50))
    assert r.info.status == "running"
    assert r.info.writing is False
