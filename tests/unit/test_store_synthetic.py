"""synthetic.fill leaves the same run a real writer would, and its spikes are where it says."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

import netsight as ns
from netsight import store
from netsight.store import synthetic


def test_fill_matches_the_writer(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    steps, layers = 1500, 6
    values = rng.standard_normal((steps, layers)).astype(np.float32)
    values[rng.random(values.shape) < 0.03] = np.nan
    name = synthetic.fill(
        tmp_path, "syn", layers=layers, steps=steps, values=values, hist_every=500, chunk=256
    )
    names = synthetic.layer_names(layers)
    with ns.open_run(tmp_path, name="real") as run:
        for s in range(steps):
            run.log_layers(s, names, ["grad_norm"], torch.from_numpy(values[s][:, None].copy()))
    s = store.open(tmp_path)
    syn, real = s.run(name), s.run("real")
    assert syn.info.status == "finished"
    assert syn.info.last_step == steps - 1
    assert syn.layers() == names
    for agg in ("max", "mean", "last", "min"):
        a = syn.layer_matrix("grad_norm", max_steps=120, agg=agg, start=33)
        b = real.layer_matrix("grad_norm", max_steps=120, agg=agg, start=33)
        assert a[0] == b[0]
        assert np.array_equal(a[1], b[1])
        np.testing.assert_allclose(a[2], b[2], rtol=1e-6)
    np.testing.assert_array_equal(
        syn.layer_series("grad_norm", names[2])[1], real.layer_series("grad_norm", names[2])[1]
    )
    hs, edges, counts = syn.histograms(names[1], "grad")
    assert hs.tolist() == [0, 500, 1000]
    assert counts.shape == (3, edges.shape[0] + 1)


def test_fill_generates_spikes_where_documented(tmp_path: Path) -> None:
    steps = 4000
    name = synthetic.fill(tmp_path, layers=10, steps=steps, hist_every=0)
    r = store.open(tmp_path).run(name)
    st, _v = r.series("loss", max_points=200)
    top = {int(f * (steps - 1)) for f, k in synthetic.SPIKES.items()}
    assert top <= set(st.tolist())
    for agg in ("max", "min"):
        _, cols, mat = r.layer_matrix("grad_norm", max_steps=100, agg=agg)
        typical = np.nanmedian(np.abs(mat[0]))
        for f, k in synthetic.SPIKES.items():
            col = np.searchsorted(cols, int(f * (steps - 1)), side="right") - 1
            if k > 0 and agg == "max":
                assert mat[0, col] > 10 * typical
            if k < 0 and agg == "min":
                assert mat[0, col] < 0
                assert np.sum(mat[0] < 0) == 1
    assert [a.step for a in r.alerts()] == sorted(top)
