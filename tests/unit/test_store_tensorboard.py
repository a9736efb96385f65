"""The TensorBoard sink, read back with TensorBoard's own EventAccumulator; Tee feeds both sinks."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import netsight as ns
from netsight import store
from netsight.errors import ArgumentError
from netsight.store import Alert
from netsight.store.tensorboard import Tee, TensorBoardSink

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def _events(logdir: Path) -> EventAccumulator:
    ea = EventAccumulator(
        str(logdir), size_guidance={"scalars": 0, "histograms": 0, "images": 0, "tensors": 0}
    )
    ea.Reload()
    return ea


def test_tee_writes_the_store_and_tensorboard(tmp_path: Path) -> None:
    layers = ["conv", "fc"]
    edges = torch.tensor([-1.0, 0.0, 1.0, 2.0])
    counts = torch.tensor([[0.0, 3.0, 4.0, 0.0, 1.0], [2.0, 0.0, 0.0, 5.0, 0.0]])
    img = torch.randint(0, 255, (5, 6, 3), dtype=torch.uint8)
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    png = io.BytesIO()
    Image.fromarray(gray).save(png, format="PNG")
    run = ns.open_run(tmp_path / "runs", name="tee")
    tb = TensorBoardSink(tmp_path / "tb", layer_metrics=["grad_norm"])
    with Tee(run, tb) as sink:
        assert sink.name == "tee"
        assert sink.store_dir == tmp_path / "runs"
        for s in range(3):
            sink.log({"loss": torch.tensor(1.0 / (s + 1)), "acc": 0.5 * s}, step=s)
            sink.log_layers(
                s, layers, ["grad_norm", "act_mean"], torch.tensor([[s, 9.0], [float("nan"), 9.0]])
            )
        sink.log_histograms(2, "grad", layers, edges, counts)
        sink.log_image(2, "maps", img, layer="conv", kind="activation_map")
        sink.log_explanation(2, "saliency", 0, png.getvalue())
        sink.log_alert(Alert(2, "fc", "exploding", 1e4, "fc exploded"))
        sink.log_text("note", "hello")
        sink.log_tensor(2, "probe", torch.ones(2))
        sink.log_module_tree([{"name": "conv"}])
    ea = _events(tmp_path / "tb")
    assert [(e.step, e.value) for e in ea.Scalars("loss")] == [(0, 1.0), (1, 0.5), (2, pytest.approx(1 / 3))]
    assert [e.value for e in ea.Scalars("grad_norm/conv")] == [0.0, 1.0, 2.0]
    tags = ea.Tags()
    assert "grad_norm/fc" not in tags["scalars"]  # NaN = missing, not written
    assert not any(t.startswith("act_mean/") for t in tags["scalars"])  # filtered by layer_metrics
    (h,) = ea.Histograms("grad/conv")
    hv = h.histogram_value
    assert h.step == 2
    assert list(hv.bucket) == [0.0, 3.0, 4.0, 0.0, 1.0]
    assert list(hv.bucket_limit) == [-1.0, 0.0, 1.0, 2.0, 3.0]
    assert hv.num == 8.0
    assert (hv.min, hv.max) == (-1.0, 3.0)
    (im,) = ea.Images("activation_map/maps")
    assert (im.width, im.height) == (6, 5)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(im.encoded_image_string))), img.numpy())
    (ex,) = ea.Images("explanation/saliency/0")
    back = np.asarray(Image.open(io.BytesIO(ex.encoded_image_string)).convert("L"))
    assert np.array_equal(back, gray)
    # the store got everything as well
    r = store.open(tmp_path / "runs").run("tee")
    assert r.series("loss")[0].tolist() == [0, 1, 2]
    assert r.histograms("conv", "grad")[2].tolist() == [counts[0].tolist()]
    assert [i.kind for i in r.images()] == ["activation_map", "explanation"]
    assert r.alerts()[0].rule == "exploding"
    assert r.tensor("probe").tolist() == [1.0, 1.0]
    assert r.info.status == "finished"


def test_tee_needs_sinks_and_the_sink_checks_shapes(tmp_path: Path) -> None:
    with pytest.raises(ArgumentError, match="at least one sink"):
        Tee()
    with TensorBoardSink(tmp_path) as tb, pytest.raises(ArgumentError, match="counts: expected shape"):
        tb.log_histograms(0, "grad", ["a"], np.zeros(3), np.zeros((1, 3)))
