"""The run store: round trips of every record kind, the coarse levels against numpy, clear errors."""

from __future__ import annotations

import json
import sqlite3
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

import netsight as ns
from netsight import store
from netsight.errors import ArgumentError, RunNotFoundError, SelectorError, StoreError, UnknownNameError
from netsight.store import Alert


def _column_oracle(raw_steps, raw, col_steps, hi, agg):
    """Each column j must aggregate the raw rows with col_steps[j] <= step < col_steps[j+1]."""
    bounds = [*col_steps[1:].tolist(), hi + 1]
    out = []
    for a, b in zip(col_steps.tolist(), bounds, strict=True):
        rows = raw[(raw_steps >= a) & (raw_steps < b)]
        assert rows.shape[0] > 0
        if agg == "max":
            out.append(np.fmax.reduce(rows, axis=0))
        elif agg == "min":
            out.append(np.fmin.reduce(rows, axis=0))
        elif agg == "mean":
            ok = ~np.isnan(rows)
            cnt = ok.sum(0)
            out.append(np.where(cnt > 0, np.where(ok, rows, 0).sum(0) / np.maximum(cnt, 1), np.nan))
        else:
            last = np.full(rows.shape[1], np.nan)
            for r in rows:
                last = np.where(np.isnan(r), last, r)
            out.append(last)
    return np.stack(out, axis=1)


def test_round_trip_of_every_kind(tmp_path: Path) -> None:
    layers = ["features.0", "features.3", "fc"]
    nodes = [
        {"name": "fc", "type": "Linear", "parent": "", "params": 170, "out_shape": [2, 10], "order": 2},
        {
            "name": "features.0",
            "type": "Conv2d",
            "parent": "features",
            "params": 224,
            "out_shape": None,
            "order": 0,
        },
        {
            "name": "features.3",
            "type": "Conv2d",
            "parent": "features",
            "params": 1168,
            "out_shape": None,
            "order": 1,
        },
    ]
    vals = torch.arange(3 * 2, dtype=torch.float32).reshape(3, 2)
    img = torch.randint(0, 255, (6, 7, 3), dtype=torch.uint8)
    edges = torch.tensor([-1.0, 0.0, 1.0])
    counts = torch.tensor([[1.0, 2.0, 3.0, 4.0], [0.0, 5.0, 5.0, 0.0], [9.0, 0.0, 0.0, 1.0]])
    big = torch.randn(4, 5, dtype=torch.float64)
    with ns.open_run(tmp_path / "runs", name="rt", config={"lr": 0.1, "dev": torch.device("cpu")}) as run:
        # fc is logged first, so first-seen order differs from the module tree's execution order
        run.log_layers(0, ["fc", "features.0", "features.3"], ["grad_norm", "act_mean"], vals)
        run.log({"loss": torch.tensor(2.5), "acc": 0.25, "n": np.int64(3)}, step=0)
        run.log({"loss": torch.tensor([1.5])})  # step=None -> 1
        run.log_histograms(1, "grad", layers, edges, counts)
        run.log_image(1, "maps/conv", img, layer="features.0", kind="activation_map", meta={"ch": 3})
        run.log_explanation(1, "grad_cam", 4, img[..., 0].contiguous())
        run.log_tensor(1, "probe", big)
        run.log_tensor(2, "probe", big * 2)
        run.log_tensor(2, "bf", torch.ones(3, dtype=torch.bfloat16))
        run.log_alert(Alert(1, "features.3", "dead_units", 0.75, "75% dead"))
        run.log_alert(Alert(0, None, "nan", float("nan"), "loss is NaN", severity="error"))
        run.log_module_tree(nodes)
        run.log_text("attention_html", "<html>é</html>")
        run.set_config({"epochs": 3})
    assert run.name == "rt"
    s = store.open(tmp_path / "runs")
    (info,) = s.runs()
    assert (info.name, info.status, info.last_step) == ("rt", "finished", 2)
    assert info.config == {"lr": 0.1, "dev": "cpu", "epochs": 3}
    assert info.created <= info.updated
    r = s.run("rt")
    assert r.scalar_keys() == ["acc", "loss", "n"]
    steps, values = r.series("loss")
    assert steps.tolist() == [0, 1]
    assert values.tolist() == [2.5, 1.5]
    assert r.series("n")[1].tolist() == [3.0]
    assert r.layers() == layers  # module order from the tree
    assert r.layer_metrics() == ["grad_norm", "act_mean"]
    names, st, mat = r.layer_matrix("act_mean")
    assert names == layers
    assert st.tolist() == [0]
    # rows of `vals` are fc, features.0, features.3
    assert mat[:, 0].tolist() == [vals[1, 1].item(), vals[2, 1].item(), vals[0, 1].item()]
    names, v = r.step_values("grad_norm")
    assert names == layers
    assert v.tolist() == [2.0, 4.0, 0.0]
    assert r.layer_series("grad_norm", "fc") == (pytest.approx(np.array([0])), pytest.approx(np.array([0.0])))
    hs, he, hc = r.histograms("features.3", "grad")
    assert hs.tolist() == [1]
    assert he.tolist() == [-1.0, 0.0, 1.0]
    assert hc.tolist() == [[0.0, 5.0, 5.0, 0.0]]
    assert r.histogram_layers("grad") == layers
    imgs = r.images()
    assert [(i.key, i.kind, i.layer, i.meta) for i in imgs] == [
        ("maps/conv", "activation_map", "features.0", {"ch": 3}),
        ("grad_cam/4", "explanation", None, {}),
    ]
    assert r.images(kind="explanation")[0].key == "grad_cam/4"
    png = r.image(imgs[0].id)
    import io

    from PIL import Image  # independent PNG decoder

    back = np.asarray(Image.open(io.BytesIO(png)))
    assert np.array_equal(back, img.numpy())
    assert torch.equal(r.tensor("probe", step=1), big)
    assert torch.equal(r.tensor("probe"), big * 2)
    assert r.tensor("bf").dtype == torch.bfloat16
    assert r.tensor("bf").tolist() == [1.0, 1.0, 1.0]
    alerts = r.alerts()
    assert [a.rule for a in alerts] == ["nan", "dead_units"]
    assert alerts[1] == Alert(1, "features.3", "dead_units", 0.75, "75% dead", "warning")
    assert np.isnan(alerts[0].value)
    assert alerts[0].severity == "error"
    assert r.module_tree() == nodes
    assert r.texts() == ["attention_html"]
    assert r.text("attention_html") == "<html>é</html>"


def test_tensor_blob_is_zlib_of_the_raw_bytes(tmp_path: Path) -> None:
    t = torch.zeros(1000)
    with ns.open_run(tmp_path, name="z") as run:
        run.log_tensor(0, "zeros", t)
    conn = sqlite3.connect(tmp_path / "z.sqlite")
    dtype, shape, data = conn.execute("SELECT dtype, shape, data FROM tensors").fetchone()
    conn.close()
    assert (dtype, json.loads(shape)) == ("float32", [1000])
    assert len(data) < 100
    assert zlib.decompress(data) == t.numpy().tobytes()


def _write_layers(run, raw: np.ndarray, steps: np.ndarray, names: list[str]) -> None:
    for s, row in zip(steps.tolist(), raw, strict=True):
        run.log_layers(s, names, ["m"], torch.from_numpy(row[:, None].copy()))


@pytest.mark.parametrize("agg", ["max", "mean", "last", "min"])
def test_layer_matrix_columns_aggregate_the_raw_steps(tmp_path: Path, agg: str) -> None:
    rng = np.random.default_rng(1)
    n, L = 3000, 7
    steps = np.cumsum(rng.integers(1, 4, n))  # irregular steps
    raw = rng.standard_normal((n, L)).astype(np.float32)
    raw[rng.random((n, L)) < 0.05] = np.nan
    names = [f"l{i}" for i in range(L)]
    run = ns.open_run(tmp_path, name="m")
    _write_layers(run, raw, steps, names)
    run.flush()
    r = store.open(tmp_path).run("m")
    for phase in ("live", "closed"):  # live: tails come from raw rows; closed: every bucket written
        for lo, hi, max_steps in [(None, None, 300), (777, 4100, 100), (10, 20, 50), (None, None, 5000)]:
            got_names, cols, mat = r.layer_matrix("m", max_steps=max_steps, start=lo, end=hi, agg=agg)
            a = steps[0] if lo is None else lo
            b = steps[-1] if hi is None else hi
            sel = (steps >= a) & (steps <= b)
            assert got_names == names
            assert 0 < cols.shape[0] <= max_steps
            assert cols[0] == steps[sel][0]  # labelled by the first step held, nothing before start
            want = _column_oracle(steps[sel], raw[sel].astype(np.float64), cols, b, agg)
            np.testing.assert_allclose(mat, want, rtol=1e-5, atol=1e-5)
        if phase == "live":
            run.close()
    f32 = r.layer_matrix("m", max_steps=300, agg=agg, dtype=np.float32)[2]
    assert f32.dtype == np.float32
    np.testing.assert_array_equal(f32, r.layer_matrix("m", max_steps=300, agg=agg)[2].astype(np.float32))
    sub, _, m2 = r.layer_matrix("m", layers=["l3", "l1"], max_steps=300, agg=agg)
    _, _, full = r.layer_matrix("m", max_steps=300, agg=agg)
    assert sub == ["l3", "l1"]
    np.testing.assert_array_equal(m2, full[[3, 1]])
    assert r.layer_matrix("m", layers="l*", max_steps=300, agg=agg)[0] == names


def test_series_keeps_spikes_and_only_real_points(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 20_000
    values = rng.standard_normal(n)
    spikes = {1234: 50.0, 7777: -40.0, 15000: 30.0, 19999: 25.0, 0: -30.0}
    for s, v in spikes.items():
        values[s] = v
    values[500] = np.nan
    with ns.open_run(tmp_path, name="s") as run:
        for s in range(n):
            run.log({"loss": float(values[s])}, step=s)
            if s == n // 2:
                run.flush()
                mid = store.open(tmp_path).run("s").series("loss", max_points=200)
                assert set(spikes).intersection(mid[0].tolist()) == {0, 1234, 7777}
    r = store.open(tmp_path).run("s")
    for max_points in (100, 1000):
        st, v = r.series("loss", max_points=max_points)
        assert len(st) <= max_points
        assert np.all(np.diff(st) > 0)
        assert np.array_equal(v, values[st])  # every point is a logged point at its own step
        assert set(spikes) <= set(st.tolist())
        assert v.max() == 50.0
        assert v.min() == -40.0
    st, v = r.series("loss", max_points=100, start=7000, end=8000)
    assert st.min() >= 7000
    assert st.max() <= 8000
    assert 7777 in st.tolist()
    st, v = r.series("loss", max_points=5000, start=400, end=600)
    assert st.tolist() == list(range(400, 601))
    assert np.isnan(v[100])


def test_layer_series_keeps_spikes(tmp_path: Path) -> None:
    n, L = 5000, 4
    raw = np.ones((n, L), np.float32)
    raw[3210, 2] = 100.0
    raw[111, 2] = -5.0
    with ns.open_run(tmp_path, name="ls") as run:
        _write_layers(run, raw, np.arange(n), [f"l{i}" for i in range(L)])
    r = store.open(tmp_path).run("ls")
    st, v = r.layer_series("m", "l2", max_points=100)
    assert len(st) <= 100
    assert v.max() == 100.0
    assert v.min() == -5.0
    spike_step = st[v.argmax()]
    assert abs(spike_step - 3210) < n / 40  # within one bucket of the true step
    st1, v1 = r.layer_series("m", "l1", max_points=10_000)
    assert np.array_equal(st1, np.arange(n))
    assert np.all(v1 == 1.0)


def test_resume_continues_levels_exactly(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    n, L = 2500, 3
    raw = rng.standard_normal((n, L)).astype(np.float32)
    names = ["a", "b", "c"]
    with ns.open_run(tmp_path, name="one") as run:
        _write_layers(run, raw, np.arange(n), names)
    with ns.open_run(tmp_path, name="two") as run:
        _write_layers(run, raw[:1003], np.arange(1003), names)
    with ns.open_run(tmp_path, name="two", resume=True) as run:
        assert run.name == "two"
        assert run.step == 1002
        _write_layers(run, raw[1003:], np.arange(1003, n), names)
    s = store.open(tmp_path)
    for agg in ("max", "mean", "last"):
        a = s.run("one").layer_matrix("m", max_steps=100, agg=agg)
        b = s.run("two").layer_matrix("m", max_steps=100, agg=agg)
        assert np.array_equal(a[1], b[1])
        np.testing.assert_array_equal(a[2], b[2])
    c1 = sqlite3.connect(tmp_path / "one.sqlite")
    c2 = sqlite3.connect(tmp_path / "two.sqlite")
    q = "SELECT level, bucket, first_step, last_step, n, mx, cnt FROM layer_levels ORDER BY level, bucket"
    assert c1.execute(q).fetchall() == c2.execute(q).fetchall()
    c1.close()
    c2.close()


def test_names_are_suffixed_generated_and_validated(tmp_path: Path) -> None:
    with ns.open_run(tmp_path, name="x") as a, ns.open_run(tmp_path, name="x") as b:
        assert (a.name, b.name) == ("x", "x-2")
    with ns.open_run(tmp_path) as c:
        assert c.name.startswith("run-")
    with pytest.raises(ArgumentError, match=r"name: .*'a/b'"):
        ns.open_run(tmp_path, name="a/b")
    assert sorted(i.name for i in store.open(tmp_path).runs()) == sorted(["x", "x-2", c.name])


def test_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        store.open(tmp_path / "nope")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("hi")
    with pytest.raises(StoreError, match="not a netsight store"):
        store.open(tmp_path / "other")
    with ns.open_run(tmp_path / "runs", name="mnist-cnn") as run:
        run.log({"loss": 1.0}, step=0)
        run.log_layers(0, ["fc"], ["grad_norm"], np.ones((1, 1)))
        with pytest.raises(ArgumentError, match=r"values\['loss'\].*shape \(2,\)"):
            run.log({"loss": torch.ones(2)})
        with pytest.raises(ArgumentError, match=r"values: expected shape \[len\(layers\), len\(metrics\)\]"):
            run.log_layers(1, ["a", "b"], ["m"], torch.ones(3, 1))
        with pytest.raises(ArgumentError, match="step: expected a step >= 0, got -1"):
            run.log({"a": 1.0}, step=-1)
        with pytest.raises(ArgumentError, match="counts: expected shape"):
            run.log_histograms(0, "grad", ["fc"], torch.zeros(3), torch.zeros(1, 3))
        with pytest.raises(ArgumentError, match="image: expected uint8"):
            run.log_image(0, "k", torch.zeros(4, 4))
        with pytest.raises(ArgumentError, match="status: expected one of"):
            run.close(status="done")
    s = store.open(tmp_path / "runs")
    with pytest.raises(RunNotFoundError, match="Did you mean 'mnist-cnn'"):
        s.run("mnist_cnn")
    r = s.run("mnist-cnn")
    with pytest.raises(UnknownNameError, match="Did you mean 'loss'"):
        r.series("los")
    with pytest.raises(UnknownNameError, match="Did you mean 'grad_norm'"):
        r.layer_matrix("grad_nrom")
    with pytest.raises(SelectorError, match=r"'fc2'.*Did you mean 'fc'"):
        r.layer_matrix("grad_norm", layers=["fc2"])
    with pytest.raises(ArgumentError, match="max_points: expected an int >= 4, got 0"):
        r.series("loss", max_points=0)
    with pytest.raises(ArgumentError, match="agg: expected one of"):
        r.layer_matrix("grad_norm", agg="median")
    with pytest.raises(StoreError, match="is closed"):
        run.log({"loss": 1.0})


def test_failed_block_marks_the_run_failed(tmp_path: Path) -> None:
    def train() -> None:
        with ns.open_run(tmp_path, name="f") as run:
            run.log({"x": 1.0}, step=0)
            _ = 1 / 0

    with pytest.raises(ZeroDivisionError):
        train()
    assert store.open(tmp_path).run("f").info.status == "failed"


def test_changes_since_reports_what_is_new(tmp_path: Path) -> None:
    run = ns.open_run(tmp_path, name="c")
    r = store.open(tmp_path).run("c")
    cur, first = r.changes_since(0)
    assert first["changed"]
    assert first["status"] == "running"
    cur2, none = r.changes_since(cur)
    assert cur2 == cur
    assert not none["changed"]
    run.log({"loss": 1.0}, step=3)
    run.log_layers(3, ["a"], ["grad_norm"], np.ones((1, 1)))
    run.log_alert(Alert(3, "a", "r", 1.0, "m"))
    run.flush()
    cur3, new = r.changes_since(cur)
    assert cur3 > cur
    assert new["scalars"] == ["loss"]
    assert new["metrics"] == ["grad_norm"]
    assert new["alerts"] == 1
    assert new["images"] == 0
    assert new["last_step"] == 3
    run.close()
    _, end = r.changes_since(cur3)
    assert end["status"] == "finished"


@pytest.mark.parametrize("crash_after", [455, 463, 464, 1023, 1024, 1500])
def test_resume_after_a_crash_rebuilds_pending_buckets(tmp_path: Path, crash_after: int) -> None:
    """A crash is simulated by snapshotting the committed file (sqlite backup) of a live writer."""
    rng = np.random.default_rng(crash_after)
    n, names = 2100, ["a", "b"]
    raw = rng.standard_normal((n, 2)).astype(np.float32)
    loss = rng.standard_normal(n)
    with ns.open_run(tmp_path, name="ref") as run:
        for s in range(n):
            run.log({"loss": float(loss[s])}, step=s)
        _write_layers(run, raw, np.arange(n), names)
    live = ns.open_run(tmp_path, name="live")
    for s in range(crash_after + 1):
        live.log({"loss": float(loss[s])}, step=s)
    _write_layers(live, raw[: crash_after + 1], np.arange(crash_after + 1), names)
    live.flush()
    src = sqlite3.connect(tmp_path / "live.sqlite")
    dst = sqlite3.connect(tmp_path / "crashed.sqlite")
    src.backup(dst)
    src.close()
    dst.close()
    live.close()
    with ns.open_run(tmp_path, name="crashed", resume=True) as run:
        for s in range(crash_after + 1, n):
            run.log({"loss": float(loss[s])}, step=s)
        _write_layers(run, raw[crash_after + 1 :], np.arange(crash_after + 1, n), names)
    queries = [
        (
            "SELECT level, bucket, first_step, last_step, n, mn, mx, cnt, last FROM layer_levels "
            "ORDER BY level, bucket"
        ),
        (
            "SELECT level, bucket, first_step, last_step, n, mn, mn_step, mx, mx_step, cnt, last "
            "FROM scalar_levels ORDER BY level, bucket"
        ),
    ]
    c1 = sqlite3.connect(tmp_path / "ref.sqlite")
    c2 = sqlite3.connect(tmp_path / "crashed.sqlite")
    for q in queries:
        assert c1.execute(q).fetchall() == c2.execute(q).fetchall()
    q = "SELECT level, bucket, sm FROM layer_levels ORDER BY level, bucket"
    a = [np.frombuffer(r[2], np.float32) for r in c1.execute(q)]
    b = [np.frombuffer(r[2], np.float32) for r in c2.execute(q)]
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-5)
    c1.close()
    c2.close()


def test_writing_flag_and_one_writer_per_run(tmp_path: Path) -> None:
    run = ns.open_run(tmp_path, name="w")
    r = store.open(tmp_path).run("w")
    assert r.info.writing is True
    assert r.info.status == "running"
    with pytest.raises(StoreError, match="open for writing by another Run"):
        ns.open_run(tmp_path, name="w", resume=True)
    run.close()
    assert r.info.writing is False
    with ns.open_run(tmp_path, name="w", resume=True) as again:
        assert again.name == "w"
    assert r.info.status == "finished"


def test_change_log_is_pruned_and_old_cursors_get_everything(tmp_path: Path, monkeypatch) -> None:
    from netsight.store import _writer

    monkeypatch.setattr(_writer, "CHANGES_KEPT", 5)
    run = ns.open_run(tmp_path, name="p")
    r = store.open(tmp_path).run("p")
    cursor, _ = r.changes_since(0)
    for s in range(1005):
        run.log({"loss": float(s)}, step=s)
        run.flush()
    run.log_text("t", "x")
    run.close()
    conn = sqlite3.connect(tmp_path / "p.sqlite")
    kept = conn.execute("SELECT COUNT(*) FROM changes").fetchone()[0]
    conn.close()
    assert kept < 20
    new_cursor, summary = r.changes_since(cursor)  # older than what the log keeps
    assert summary["reset"]
    assert summary["scalars"] == ["loss"]
    assert summary["texts"] == ["t"]
    assert new_cursor > cursor
    last, fresh = r.changes_since(new_cursor)
    assert last == new_cursor
    assert not fresh["changed"]
    assert not fresh["reset"]


def test_cached_level_chunks_follow_rewritten_rows(tmp_path: Path) -> None:
    """A resumed run rewrites the buckets that close() had written early; a reader that cached them
    (the same RunReader object) must see the new values."""
    rng = np.random.default_rng(5)
    # level 4 (16 steps) is chosen; buckets are cached 256 at a time, so bucket 255 (steps 4080..4095) is
    # the last of the first chunk: close() at step 4090 writes it early, the resumed run rewrites it while
    # every new bucket lands in the next chunk (the first chunk's row count does not change)
    n, cut, names = 4200, 4091, ["a", "b", "c"]
    raw = rng.standard_normal((n, 3)).astype(np.float32)
    with ns.open_run(tmp_path, name="c") as run:
        _write_layers(run, raw[:cut], np.arange(cut), names)
    r = store.open(tmp_path).run("c")
    for agg in ("max", "mean"):
        r.layer_matrix("m", max_steps=300, agg=agg)  # fills the cache
    raw[cut:] += 10.0  # later steps are larger: the partly-filled buckets of close() must change
    with ns.open_run(tmp_path, name="c", resume=True) as run:
        _write_layers(run, raw[cut:], np.arange(cut, n), names)
    for agg in ("max", "mean"):
        _, cols, mat = r.layer_matrix("m", max_steps=300, agg=agg)
        assert cols[1] - cols[0] == 16
        want = _column_oracle(np.arange(n), raw.astype(np.float64), cols, n - 1, agg)
        np.testing.assert_allclose(mat, want, rtol=1e-5, atol=1e-5)


def test_runs_skips_files_being_created_and_refuses_garbage(tmp_path: Path) -> None:
    with ns.open_run(tmp_path, name="ok") as run:
        run.log({"a": 1.0}, step=0)
    (tmp_path / "creating.sqlite").touch()  # reserved by a writer that has not laid out its schema yet
    s = store.open(tmp_path)
    assert [i.name for i in s.runs()] == ["ok"]
    with pytest.raises(StoreError, match="still being created"):
        s.run("creating")
    (tmp_path / "junk.sqlite").write_bytes(b"not a database, " * 100)
    with pytest.raises(StoreError, match=r"'junk'.*not a readable netsight run"):
        s.run("junk")


def test_a_reader_never_opens_a_run_file_outside_the_store(tmp_path: Path) -> None:
    with ns.open_run(tmp_path / "runs", name="a") as run:
        run.log({"x": 1.0}, step=0)
    with ns.open_run(tmp_path / "elsewhere", name="secret") as run:
        run.log({"x": 2.0}, step=0)
    s = store.open(tmp_path / "runs")
    outside = str(tmp_path / "elsewhere" / "secret")
    for name in ("../elsewhere/secret", outside, "..", "a" * 300):
        assert name not in s
        with pytest.raises(RunNotFoundError, match=r"no run .* in"):
            s.run(name)
    assert s.run("a").series("x")[1].tolist() == [1.0]


@pytest.mark.parametrize(
    "edges",
    [[0.0, float("nan"), 2.0], [0.0, float("inf")], [0.0, 2.0, 1.0], [1.0, 1.0]],
    ids=["nan", "inf", "decreasing", "repeated"],
)
def test_histogram_edges_must_be_finite_and_increasing(tmp_path: Path, edges: list[float]) -> None:
    with ns.open_run(tmp_path, name="h") as run:
        for e in (torch.tensor(edges), np.array(edges)):
            with pytest.raises(ArgumentError, match="edges: expected finite, strictly increasing"):
                run.log_histograms(0, "grad", ["fc"], e, torch.zeros(1, len(edges) + 1))
        good = torch.tensor([0.0, 1.0, 2.0])
        run.log_histograms(0, "grad", ["fc"], good, torch.ones(1, 4))
        good[1] = 5.0  # changed in place after a check: checked again
        with pytest.raises(ArgumentError, match="edges"):
            run.log_histograms(1, "grad", ["fc"], good, torch.ones(1, 4))


def test_a_name_not_yet_committed_by_a_live_writer_says_so(tmp_path: Path) -> None:
    run = ns.open_run(tmp_path, name="live", commit_interval=60)  # nothing committed for a minute
    try:
        run.log({"loss": 1.0}, step=0)
        reader = store.open(tmp_path).run("live")
        with pytest.raises(ns.errors.UnknownNameError, match=r"being written now.*run\.flush\(\)"):
            reader.series("loss")
        run.flush()
        steps, values = reader.series("loss")
        assert list(steps) == [0]
        assert list(values) == [1.0]
    finally:
        run.close()
    with pytest.raises(ns.errors.UnknownNameError) as got:  # a finished run: no such hint
        store.open(tmp_path).run("live").series("lost")
    assert "being written" not in str(got.value)
    assert "Did you mean 'loss'" in str(got.value)
