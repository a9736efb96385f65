"""The command line through typer's CliRunner: help, methods, explain, and one-line errors."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import netsight as ns
from netsight.cli import app
from netsight.render import overlay, to_png

runner = CliRunner()

COMMANDS = ("demo", "explain", "methods", "report", "runs")


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=True, color=False)


def plain(text: str) -> str:
    """Rich output without box drawing, so words can be searched for."""
    return re.sub(r"[\u2500-\u257f]", " ", text)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_examples(command: str) -> None:
    res = invoke(command, "--help")
    assert res.exit_code == 0, res.output
    assert "Examples" in res.output
    assert f"netsight {command}" in res.output


def test_root_help_lists_every_command() -> None:
    res = invoke("--help")
    assert res.exit_code == 0
    for command in COMMANDS:
        assert command in res.output


def test_methods_lists_every_registered_method_with_kind_and_cost() -> None:
    res = runner.invoke(app, ["methods"], env={"COLUMNS": "250"})
    assert res.exit_code == 0, res.output
    out = plain(res.output)
    names = ns.list_methods()
    assert len(names) >= 2
    for name in names:
        info = ns.get_method(name)
        line = next(ln for ln in out.splitlines() if re.search(rf"\s{re.escape(name)}\s", f" {ln} "))
        assert info.kind in line
        assert info.passes.split()[0] in line


def test_methods_pattern_filters_by_glob() -> None:
    res = runner.invoke(app, ["methods", "*cam*"], env={"COLUMNS": "250"})
    assert res.exit_code == 0
    out = plain(res.output)
    expected = set(ns.list_methods("*cam*"))
    shown = {n for n in ns.list_methods() if re.search(rf"\s{re.escape(n)}\s", out)}
    assert shown == expected


def test_unknown_pattern_is_one_red_line_and_exit_1() -> None:
    res = invoke("methods", "nothing-like-this*")
    assert res.exit_code == 1
    assert "Traceback" not in res.output
    assert "no registered method matches 'nothing-like-this*'" in res.output


def _chelsea(tmp_path: Path) -> Path:
    skimage_data = pytest.importorskip("skimage.data")
    from netsight.render import save_png

    return save_png(torch.from_numpy(skimage_data.chelsea()), tmp_path / "chelsea.png")


def _read_png(path: Path) -> torch.Tensor:
    import numpy as np
    from PIL import Image

    with Image.open(path) as im:
        return torch.from_numpy(np.asarray(im.convert("RGB")).copy())  # uint8 [H, W, 3]


def test_explain_chelsea_with_torchvision_resnet18_writes_overlays_and_index(tmp_path: Path) -> None:
    image = _chelsea(tmp_path)
    out = tmp_path / "out"
    res = invoke(
        "explain", str(image), "--model", "torchvision:resnet18", "--method", "grad_cam",
        "--method", "saliency", "--out", str(out), "--no-progress",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    for name in ("chelsea.png", "chelsea_grad_cam.png", "chelsea_saliency.png"):
        img = _read_png(out / name)
        assert tuple(img.shape) == (224, 224, 3)
    base = _read_png(out / "chelsea.png").float()
    for method in ("grad_cam", "saliency"):
        assert (_read_png(out / f"chelsea_{method}.png").float() - base).abs().mean() > 5
    index = (out / "index.html").read_text()
    for name in ("chelsea.png", "chelsea_grad_cam.png", "chelsea_saliency.png"):
        assert f'src="{name}"' in index
    assert "grad_cam" in index
    assert "random weights" in index


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, padding=1))
        self.head = nn.Linear(6, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


FACTORY = """
import torch
from torch import nn

class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, padding=1))
        self.head = nn.Linear(6, 5)

    def forward(self, x):
        return self.head(self.features(x).mean(dim=(2, 3)))

def build():
    return Tiny()
"""


def _expected_overlay(model: nn.Module, image: Path, *, layer: str, target: int, size: int = 32) -> bytes:
    """The overlay computed here from the pieces: torchvision preprocessing, ns.explain, render.overlay."""
    from torchvision.transforms import v2

    img = _read_png(image).permute(2, 0, 1)
    pic = v2.CenterCrop(size)(v2.Resize(size, antialias=True)(img)).float()[None] / 255
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    ex = ns.explain(model.eval(), (pic - mean) / std, target=target, method="grad_cam", layer=layer)
    return to_png(overlay(pic, ex.attributions)[0])


def test_explain_factory_with_state_dict_matches_the_library(tmp_path: Path) -> None:
    image = _chelsea(tmp_path)
    (tmp_path / "tiny.py").write_text(FACTORY)
    torch.manual_seed(3)
    model = Tiny()
    torch.save(model.state_dict(), tmp_path / "w.pt")
    out = tmp_path / "o"
    res = invoke(
        "explain", str(image), "-m", f"{tmp_path / 'tiny.py'}:build", "--weights", str(tmp_path / "w.pt"),
        "--layer", "features.2", "--target", "4", "--size", "32", "--out", str(out), "--no-progress",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert (out / "chelsea_grad_cam.png").read_bytes() == _expected_overlay(
        model, image, layer="features.2", target=4
    )


def test_explain_torchscript_and_saved_module(tmp_path: Path) -> None:
    image = _chelsea(tmp_path)
    model = Tiny().eval()
    torch.save(model, tmp_path / "whole.pt")
    with pytest.warns((FutureWarning, DeprecationWarning)):  # TorchScript is deprecated in torch >= 2.10
        torch.jit.save(torch.jit.script(model), tmp_path / "scripted.pt")
    for spec in ("whole.pt", "scripted.pt"):
        out = tmp_path / f"out-{spec}"
        res = invoke(
            "explain", str(image), "-m", str(tmp_path / spec), "--method", "saliency", "--size", "32",
            "--out", str(out), "--no-progress",
        )  # fmt: skip
        assert res.exit_code == 0, res.output
        assert (out / "chelsea_saliency.png").exists()


def test_state_dict_without_factory_says_what_to_pass(tmp_path: Path) -> None:
    image = _chelsea(tmp_path)
    torch.save(Tiny().state_dict(), tmp_path / "sd.pt")
    res = invoke("explain", str(image), "-m", str(tmp_path / "sd.pt"), "--out", str(tmp_path / "o"))
    assert res.exit_code == 1
    assert "holds a state dict" in res.output
    assert "file.py:factory" in res.output or "model.py:factory" in res.output
    assert "Traceback" not in res.output


def test_unknown_method_suggests_and_does_no_work(tmp_path: Path) -> None:
    image = _chelsea(tmp_path)
    out = tmp_path / "never"
    res = invoke(
        "explain", str(image), "-m", "torchvision:resnet18", "--method", "gradcam", "--out", str(out)
    )
    assert res.exit_code == 1
    assert "Did you mean 'grad_cam'" in res.output
    assert len(res.output.strip().splitlines()) == 1
    assert not out.exists()


def test_unknown_torchvision_model_suggests(tmp_path: Path) -> None:
    image = _chelsea(tmp_path)
    res = invoke("explain", str(image), "-m", "torchvision:resnet81", "--out", str(tmp_path / "o"))
    assert res.exit_code == 1
    assert "resnet18" in res.output


def test_missing_image_is_a_clear_error(tmp_path: Path) -> None:
    res = invoke("explain", str(tmp_path / "nope.png"), "-m", "torchvision:resnet18", "--out", str(tmp_path))
    assert res.exit_code == 1
    assert "no such file" in res.output
    assert "nope.png" in res.output


def test_debug_shows_the_traceback() -> None:
    res = invoke("--debug", "methods", "--kind", "nonsense")
    assert res.exit_code != 0
    assert isinstance(res.exception, ns.errors.ArgumentError)
    res = invoke("methods", "--kind", "nonsense")
    assert res.exit_code == 1
    assert res.exception is None or isinstance(res.exception, SystemExit)


def _tiny_store(store: Path) -> str:
    import numpy as np

    with ns.open_run(store, name="tiny", config={"lr": 0.1}) as run:
        for step in range(1, 21):
            run.log({"loss": 1.0 / step}, step=step)
            values = np.array([[0.5 / step], [2.0 / step]], dtype=np.float32)
            run.log_layers(step, ["conv", "fc"], ["grad_norm"], values)
        return str(run.name)


def test_report_writes_one_self_contained_file(tmp_path: Path) -> None:
    name = _tiny_store(tmp_path / "s")
    out = tmp_path / "r.html"
    res = invoke("report", name, "--store", str(tmp_path / "s"), "--out", str(out))
    assert res.exit_code == 0, res.output
    page = out.read_text()
    assert 'id="gradient-flow-heatmap"' in page
    assert "<script" not in page  # nothing to run, nothing to fetch
    assert 'src="http' not in page
    assert 'href="http' not in page


def test_report_unknown_run_suggests(tmp_path: Path) -> None:
    _tiny_store(tmp_path / "s")
    res = invoke("report", "tinny", "--store", str(tmp_path / "s"), "--out", str(tmp_path / "r.html"))
    assert res.exit_code == 1
    assert "tiny" in res.output
    assert "Traceback" not in res.output


def test_report_missing_store_is_one_line(tmp_path: Path) -> None:
    res = invoke("report", "x", "--store", str(tmp_path / "nowhere"))
    assert res.exit_code == 1
    assert "nowhere" in res.output
    assert "Traceback" not in res.output


def test_python_dash_m_netsight_runs_the_cli() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "netsight", "methods", "grad_cam"],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert res.returncode == 0, res.stderr
    assert "grad_cam" in res.stdout
    assert ns.get_method("grad_cam").kind in res.stdout


def test_explain_timm_model(tmp_path: Path) -> None:
    timm = pytest.importorskip("timm")
    assert "resnet10t" in timm.list_models()
    image = _chelsea(tmp_path)
    out = tmp_path / "t"
    res = invoke(
        "explain", str(image), "-m", "timm:resnet10t", "--method", "grad_cam", "--size", "64",
        "--out", str(out), "--no-progress",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert tuple(_read_png(out / "chelsea_grad_cam.png").shape) == (64, 64, 3)
    res = invoke("explain", str(image), "-m", "timm:resnet10", "--out", str(out))
    assert res.exit_code == 1
    assert "resnet10t" in res.output or "Did you mean" in res.output


def test_explain_in_batches_gives_the_same_overlays_as_one_batch(tmp_path: Path) -> None:
    """--batch 2 over five images (batches of 2, 2, 1): every overlay and index row equal one batch's."""
    from skimage import data, io

    photos = [data.chelsea(), data.astronaut(), data.coffee()]
    paths = []
    for i in range(5):
        p = tmp_path / f"img{i}.png"
        io.imsave(p, photos[i % 3][i * 7 :, i * 5 :], check_contrast=False)
        paths.append(str(p))
    (tmp_path / "tiny.py").write_text(FACTORY)
    torch.manual_seed(3)
    torch.save(Tiny().state_dict(), tmp_path / "w.pt")
    outs = {}
    for b in ("2", "16"):
        outs[b] = tmp_path / f"out{b}"
        res = invoke(
            "explain", *paths, "-m", f"{tmp_path / 'tiny.py'}:build", "--weights", str(tmp_path / "w.pt"),
            "--method", "grad_cam", "--method", "saliency", "--size", "40", "--batch", b,
            "--out", str(outs[b]), "--no-progress",
        )  # fmt: skip
        assert res.exit_code == 0, res.output
        assert "wrote 10 overlays" in res.output
    for i in range(5):
        for suffix in ("", "_grad_cam", "_saliency"):
            name = f"img{i}{suffix}.png"
            assert (outs["2"] / name).read_bytes() == (outs["16"] / name).read_bytes(), name
    assert (outs["2"] / "index.html").read_text() == (outs["16"] / "index.html").read_text()
    bad = invoke("explain", paths[0], "nope.png", "-m", "torchvision:resnet18", "--out", str(tmp_path / "x"))
    assert bad.exit_code != 0
    assert "nope.png" in bad.output
    assert not (tmp_path / "x").exists()  # refused before any work
    zero = invoke("explain", paths[0], "-m", "torchvision:resnet18", "--batch", "0")
    assert zero.exit_code != 0
    assert "--batch" in zero.output


# --- the user review: weights, channels, saved modules, hints, folders, the index, output ---------------


def one_line(res, *words: str) -> str:
    """A failure printed as one line that holds every word; the line, whitespace collapsed."""
    assert res.exit_code == 1, res.output
    assert "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1, res.output
    text = " ".join(res.output.split())
    for word in words:
        assert word in text, res.output
    return text


def test_weights_load_into_a_torchvision_model(tmp_path: Path) -> None:
    """--weights is loaded (not ignored) into torchvision:NAME: a head that always says class 7 does."""
    from torchvision import models

    image = _chelsea(tmp_path)
    net = models.squeezenet1_1()
    conv = net.classifier[1]
    assert isinstance(conv, nn.Conv2d)
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.zero_()
        conv.bias[7] = 20.0
    torch.save(net.state_dict(), tmp_path / "sq.pt")
    out = tmp_path / "o"
    res = invoke(
        "explain", str(image), "-m", "torchvision:squeezenet1_1", "--weights", str(tmp_path / "sq.pt"),
        "--method", "saliency", "--size", "64", "--out", str(out), "--no-progress",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    index = (out / "index.html").read_text()
    assert "class 7 (p=1.000)" in index
    assert "random weights" not in index


def test_weights_that_do_not_fit_a_torchvision_model_are_summed_up(tmp_path: Path) -> None:
    image = _chelsea(tmp_path)
    torch.save(Tiny().state_dict(), tmp_path / "tiny.pt")
    res = invoke(
        "explain", str(image), "-m", "torchvision:squeezenet1_1", "--weights", str(tmp_path / "tiny.pt"),
        "--out", str(tmp_path / "o"),
    )  # fmt: skip
    text = one_line(res, "--weights", "tiny.pt", "missing keys", "4 unexpected keys", "features.0.weight")
    assert len(text) < 600  # a summary, not every key name
    assert not (tmp_path / "o").exists()


def test_weights_of_the_wrong_shape_are_named(tmp_path: Path) -> None:
    image = _chelsea(tmp_path)
    (tmp_path / "tiny.py").write_text(FACTORY)
    state = Tiny().state_dict()
    state["head.weight"] = torch.zeros(7, 6)
    torch.save(state, tmp_path / "w.pt")
    res = invoke(
        "explain", str(image), "-m", f"{tmp_path / 'tiny.py'}:build", "--weights", str(tmp_path / "w.pt"),
        "--out", str(tmp_path / "o"),
    )  # fmt: skip
    one_line(res, "--weights", "1 shape mismatches", "head.weight (7, 6) vs (5, 6)")


def test_weights_with_a_saved_module_are_refused(tmp_path: Path) -> None:
    image = _chelsea(tmp_path)
    torch.save(Tiny().eval(), tmp_path / "whole.pt")
    torch.save(Tiny().state_dict(), tmp_path / "w.pt")
    res = invoke(
        "explain", str(image), "-m", str(tmp_path / "whole.pt"), "--weights", str(tmp_path / "w.pt"),
        "--out", str(tmp_path / "o"),
    )  # fmt: skip
    one_line(res, "--weights", "only applies to torchvision:NAME, timm:NAME and file.py:factory")


@pytest.mark.parametrize("kind", ["missing", "image"])
def test_unreadable_weights_name_the_option_path_and_fix(tmp_path: Path, kind: str) -> None:
    image = _chelsea(tmp_path)
    (tmp_path / "tiny.py").write_text(FACTORY)
    weights = tmp_path / "missing.pt" if kind == "missing" else image
    res = invoke(
        "explain", str(image), "-m", f"{tmp_path / 'tiny.py'}:build", "--weights", str(weights),
        "--out", str(tmp_path / "o"),
    )  # fmt: skip
    text = one_line(res, "--weights", str(weights), "torch.save(model.state_dict(), PATH)")
    assert "Errno" not in text
    assert "Unpickling" not in text


GRAY_FACTORY = """
import torch
from torch import nn

def build():
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 10),
    )
"""


def test_a_one_channel_model_gets_grayscale_pixels_in_0_1(tmp_path: Path) -> None:
    """Like netsight's MNIST demo: grayscale, mean 0, std 1; the overlay is still drawn in RGB."""
    import importlib.util

    import numpy as np
    from PIL import Image
    from torchvision.transforms import v2

    image = _chelsea(tmp_path)
    (tmp_path / "gray.py").write_text(GRAY_FACTORY)
    spec = importlib.util.spec_from_file_location("gray_model_for_test", tmp_path / "gray.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(0)
    model = module.build().eval()
    torch.save(model.state_dict(), tmp_path / "cnn.pt")
    out = tmp_path / "o"
    res = invoke(
        "explain", str(image), "-m", f"{tmp_path / 'gray.py'}:build", "--weights", str(tmp_path / "cnn.pt"),
        "--layer", "2", "--target", "3", "--size", "28", "--out", str(out), "--no-progress",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    with Image.open(image) as im:
        gray = torch.from_numpy(np.asarray(im.convert("L")).copy())[None]
    pic = v2.CenterCrop(28)(v2.Resize(28, antialias=True)(gray)).float()[None] / 255  # [1, 1, 28, 28]
    ex = ns.explain(model, pic, target=3, method="grad_cam", layer="2")
    assert (out / "chelsea_grad_cam.png").read_bytes() == to_png(
        overlay(pic.expand(-1, 3, -1, -1), ex.attributions)[0]
    )
    assert tuple(_read_png(out / "chelsea.png").shape) == (28, 28, 3)
    for args, words in (
        (("--mean", "0.1,0.2"), ("--mean", "2 values", "1 input channels")),
        (("--std", "0"), ("--std", "above 0")),
        (("--mean", "a,b"), ("--mean", "'a,b'", "comma-separated")),
    ):
        bad = invoke(
            "explain", str(image), "-m", f"{tmp_path / 'gray.py'}:build", "--size", "28",
            "--out", str(tmp_path / "bad"), *args,
        )  # fmt: skip
        one_line(bad, *words)
    assert "--mean" in invoke("explain", "--help").output


def test_a_saved_module_whose_code_is_not_importable_says_so(tmp_path: Path) -> None:
    image = _chelsea(tmp_path)
    code = tmp_path / "code"
    code.mkdir()
    (code / "mnistmodel_cli_test.py").write_text(FACTORY)
    sys.path.insert(0, str(code))
    try:
        import mnistmodel_cli_test  # type: ignore[import-not-found]

        torch.save(mnistmodel_cli_test.build(), tmp_path / "full.pt")
    finally:
        sys.path.remove(str(code))
        sys.modules.pop("mnistmodel_cli_test", None)
    res = invoke("explain", str(image), "-m", str(tmp_path / "full.pt"), "--out", str(tmp_path / "o"))
    text = one_line(res, "'mnistmodel_cli_test'", "importable", "PYTHONPATH", "file.py:factory --weights")
    assert "pip install" not in text


def test_demo_with_an_unknown_method_fails_up_front(tmp_path: Path) -> None:
    store = tmp_path / "s"
    res = invoke(
        "demo", "--method", "gradcam", "--quick", "--no-serve", "--no-progress", "--store", str(store)
    )
    one_line(res, "--method", "'gradcam'", "Did you mean 'grad_cam'", "netsight methods")
    assert not store.exists()  # no training, no run


def test_cli_errors_give_cli_hints_not_python_ones(tmp_path: Path) -> None:
    image = _chelsea(tmp_path)
    res = invoke("explain", str(image), "-m", "torchvision:resnet18", "--method", "gradcam")
    text = one_line(res, "--method", "netsight methods")
    assert "list_methods()" not in text
    _tiny_store(tmp_path / "s")
    res = invoke("report", "demo-mnst", "--store", str(tmp_path / "s"))
    text = one_line(res, "'demo-mnst'", "'tiny'", f"netsight runs --store {tmp_path / 's'}")
    assert "store.runs()" not in text


def test_runs_lists_the_runs_of_a_store(tmp_path: Path) -> None:
    _tiny_store(tmp_path / "s")
    with ns.open_run(tmp_path / "s", name="second") as run:
        run.log({"loss": 1.0}, step=3)
    res = runner.invoke(app, ["runs", "--store", str(tmp_path / "s")], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    lines = plain(res.output).splitlines()
    tiny = next(ln for ln in lines if " tiny " in f" {ln} ")
    assert "finished" in tiny
    assert " 20 " in tiny
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", tiny)
    second = next(ln for ln in lines if " second " in f" {ln} ")
    assert " 3 " in second
    one_line(invoke("runs", "--store", str(tmp_path / "nowhere")), "--store", "nowhere", "does not exist")


def test_a_folder_as_image_says_to_pass_its_files(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    res = invoke("explain", str(tmp_path / "out"), "-m", "torchvision:resnet18", "--out", str(tmp_path / "o"))
    one_line(res, "is a folder", f"{tmp_path / 'out' / '*.png'}")


def test_index_says_it_shows_this_run_and_paths_are_not_wrapped(tmp_path: Path) -> None:
    image = _chelsea(tmp_path)
    (tmp_path / "tiny.py").write_text(FACTORY)
    out = tmp_path / ("a-rather-long-folder-name-" * 4) / "out"
    res = invoke(
        "explain", str(image), "-m", f"{tmp_path / 'tiny.py'}:build", "--size", "32", "--method", "saliency",
        "--out", str(out), "--no-progress",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert str(out / "index.html") in res.output  # on one line, not wrapped at 80 columns
    assert "it shows this run: 1 image x saliency" in res.output
    assert "this run" in " ".join(invoke("explain", "--help").output.split())


def test_progress_bars_stay_off_when_output_is_not_a_terminal() -> None:
    from netsight.cli.explain import _progress

    bar = _progress(3, True)  # pytest captures stderr: not a terminal
    if bar is not None:  # no tqdm: no bar at all
        assert bar.disable
        bar.close()


def test_demo_prints_the_dashboard_and_the_report_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import netsight.demo as nd

    seen: dict[str, object] = {}

    def fake_run(**kwargs: object) -> nd.DemoResult:
        seen.update(kwargs)
        echo = kwargs["echo"]
        assert callable(echo)
        echo("dashboard: http://127.0.0.1:1/")
        echo("epoch 1/1: test accuracy 50.00%")
        echo(f"report: {tmp_path / 'r.html'}")
        return nd.DemoResult(
            store=tmp_path, run="demo-mnist", test_accuracy=0.5, epoch_accuracies=(0.5,), steps=1,
            seconds=1.0, report=tmp_path / "r.html", url="http://127.0.0.1:1/", methods=("saliency",),
        )  # fmt: skip

    monkeypatch.setattr(nd, "run", fake_run)
    res = invoke("demo", "--store", str(tmp_path))
    assert res.exit_code == 0, res.output
    assert res.output.count("http://127.0.0.1:1/") == 0  # the server prints its URL itself, once
    assert res.output.count("report:") == 1
    assert "epoch 1/1" in res.output
    assert seen["progress"] is False  # CliRunner's output is not a terminal
