"""``netsight demo`` end to end: the run it leaves in the store is complete and means what it says."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import netsight as ns
import netsight.demo as nd
from netsight.cli import app
from netsight.render import feature_grid, overlay, to_png


def _leaves(model: torch.nn.Module) -> list[str]:
    """The layers ns.watch records: every leaf but pooling (left out by design, see monitor docs)."""
    return [
        n
        for n, m in model.named_modules()
        if n and not list(m.children()) and not isinstance(m, torch.nn.MaxPool2d)
    ]


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> nd.DemoResult:
    store = tmp_path_factory.mktemp("store")
    return nd.run(
        epochs=1,
        store=store,
        serve=False,
        train_size=1024,
        test_size=256,
        explain_images=3,
        probes=2,
        methods=("saliency", "grad_cam", "integrated_gradients"),
        progress=False,
    )


def test_every_layer_has_gradient_and_activation_series(quick: nd.DemoResult) -> None:
    r = ns.store.open(quick.store).run(quick.run)
    assert r.info.status == "finished"
    assert r.alerts() == []  # a healthy CNN raises no alert
    assert quick.model is not None
    leaves = _leaves(quick.model)
    assert r.layers() == leaves
    for metric in ("act_mean", "act_std", "delta_norm"):  # every layer: its output and dL/d output
        names, steps, values = r.layer_matrix(metric, layers=leaves)
        assert list(names) == leaves
        assert len(steps) > 0
        assert np.isfinite(values).any(axis=1).all(), metric
    with_params = [n for n, m in quick.model.named_modules() if n in leaves and list(m.parameters())]
    names, _, values = r.layer_matrix("grad_norm", layers=with_params)
    assert list(names) == with_params
    assert (np.nan_to_num(values) > 0).any(axis=1).all()
    steps, loss = r.series("loss")
    assert len(steps) == quick.steps == math.ceil(1024 / 64)
    assert np.isfinite(loss).all()


def test_test_accuracy_is_what_the_model_scores(quick: nd.DemoResult) -> None:
    assert quick.model is not None
    assert quick.data is not None
    with torch.no_grad():
        acc = (quick.model(quick.data.x_test).argmax(1) == quick.data.y_test).float().mean().item()
    assert quick.test_accuracy == pytest.approx(acc, abs=1e-6)
    r = ns.store.open(quick.store).run(quick.run)
    _, logged = r.series("test_acc")
    assert logged[-1] == pytest.approx(acc, abs=1e-6)


def test_activation_maps_are_feature_grids_of_one_hooked_forward(quick: nd.DemoResult) -> None:
    assert quick.model is not None
    assert quick.data is not None
    r = ns.store.open(quick.store).run(quick.run)
    probes = quick.data.x_test[list(quick.probe_indices)]
    with torch.no_grad(), ns.capture(quick.model, layers="features.*") as cap:
        quick.model(probes)
    for layer in nd.MAP_LAYERS:
        infos = r.images(kind="activation_map", layer=layer)
        assert len(infos) == len(quick.probe_indices) * 3  # before training, early, after the epoch
        for i in range(len(quick.probe_indices)):
            last = max((x for x in infos if x.key == f"probe{i}/{layer}"), key=lambda x: x.step)
            assert last.step == quick.steps
            act = cap[layer].activation
            grid = feature_grid(act, sample=i, scale=3 if act.shape[-1] <= 14 else 2)
            assert r.image(last.id) == to_png(grid)


def test_explanations_are_the_methods_overlays(quick: nd.DemoResult) -> None:
    assert quick.model is not None
    assert quick.data is not None
    assert quick.methods == ("saliency", "grad_cam", "integrated_gradients")
    r = ns.store.open(quick.store).run(quick.run)
    infos = r.images(kind="explanation")
    assert {(i.key) for i in infos} == {f"{m}/{j}" for m in quick.methods for j in range(3)}
    x = quick.data.x_test[list(quick.explained_indices)]
    with torch.no_grad():
        pred = quick.model(x).argmax(1)
    ex = ns.explain(quick.model, x, target=pred, method="grad_cam", layer=nd.CAM_LAYER)
    pictures = torch.nn.functional.interpolate(x, size=(112, 112), mode="nearest")
    expected = overlay(pictures, ex.attributions)
    for j in range(3):
        info = next(i for i in infos if i.key == f"grad_cam/{j}")
        assert r.image(info.id) == to_png(expected[j])
        assert info.meta["predicted"] == str(int(pred[j]))
        assert info.meta["label"] == str(int(quick.data.y_test[quick.explained_indices[j]]))


def test_report_is_written_and_holds_every_section(quick: nd.DemoResult) -> None:
    assert quick.report is not None
    assert quick.report.exists()
    page = quick.report.read_text()
    for anchor in ('id="gradient-flow-heatmap"', 'id="error-signal-heatmap"', 'id="activations"',
                   'id="alerts"', 'id="explanations"', 'id="activation-maps"'):  # fmt: skip
        assert anchor in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in page


def test_cli_demo_quick_into_a_tmp_store(tmp_path: Path) -> None:
    res = CliRunner().invoke(
        app,
        ["demo", "--quick", "--epochs", "1", "--no-serve", "--no-progress", "--store", str(tmp_path / "s"),
         "--method", "saliency", "--report", str(tmp_path / "r.html"), "--name", "cli-demo"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "test accuracy" in res.output
    assert (tmp_path / "r.html").exists()
    r = ns.store.open(tmp_path / "s").run("cli-demo")
    assert {i.key.split("/")[0] for i in r.images(kind="explanation")} == {"saliency"}


def test_cli_demo_bad_data_is_one_line(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["demo", "--data", "mnits", "--no-serve", "--store", str(tmp_path)])
    assert res.exit_code == 1
    assert "Did you mean 'mnist'" in res.output
    assert "Traceback" not in res.output


@pytest.mark.slow
def test_default_demo_reaches_95_percent(tmp_path: Path) -> None:
    """The README's first command: default settings must reach >= 95% on the held-out digits."""
    result = nd.run(store=tmp_path, serve=False, progress=False, report=False, methods=())
    assert result.test_accuracy >= 0.95, result.epoch_accuracies
