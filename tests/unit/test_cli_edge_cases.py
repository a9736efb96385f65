"""The command line on awkward input: each mistake is one red line naming the option, exit code 1."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import netsight as ns
from netsight.cli import app

runner = CliRunner()

MODEL_PY = """
from torch import nn


def build():
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5)
    )
"""


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=True, color=False)


def one_line_error(res, *words: str) -> None:
    assert res.exit_code == 1, res.output
    assert "Traceback" not in res.output
    text = " ".join(res.output.split())  # rich may wrap a long line
    assert text.startswith("error:"), res.output
    for word in words:
        assert word in text, res.output


@pytest.fixture
def tiny(tmp_path: Path) -> tuple[str, Path]:
    """``(model spec, image path)``: a five-class CNN built by a factory, and a 40 x 50 RGB PNG."""
    (tmp_path / "model.py").write_text(MODEL_PY)
    image = tmp_path / "rgb.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(image)
    return f"{tmp_path / 'model.py'}:build", image


def explain(tiny: tuple[str, Path], *args: str, image: Path | None = None):
    spec, rgb = tiny
    return invoke("explain", str(image or rgb), "-m", spec, "--size", "32", "--no-progress", *args)


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "I;16", "1"])
def test_any_pil_mode_is_explained(tiny: tuple[str, Path], tmp_path: Path, mode: str) -> None:
    image = tmp_path / f"img-{mode.replace(';', '')}.png"
    Image.new(mode, (50, 40)).save(image)
    res = explain(tiny, "-o", str(tmp_path / "out"), image=image)
    assert res.exit_code == 0, res.output
    with Image.open(tmp_path / "out" / f"{image.stem}_grad_cam.png") as im:
        assert (im.mode, im.size) == ("RGB", (32, 32))


@pytest.mark.parametrize("size", ["0", "-3"])
def test_a_size_below_one_pixel_names_the_option(tiny: tuple[str, Path], tmp_path: Path, size: str) -> None:
    res = explain(tiny, "--size", size, "-o", str(tmp_path / "o"))
    one_line_error(res, "--size", f"got {size}")
    assert not (tmp_path / "o").exists()


def test_a_malformed_device_names_the_option(tiny: tuple[str, Path], tmp_path: Path) -> None:
    one_line_error(explain(tiny, "--device", "bogus", "-o", str(tmp_path / "o")), "--device", "'bogus'")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_gpu_says_to_use_the_cpu(tiny: tuple[str, Path], tmp_path: Path) -> None:
    one_line_error(explain(tiny, "--device", "cuda", "-o", str(tmp_path / "o")), "--device", "--device cpu")


def test_an_out_folder_that_is_a_file_names_the_option(tiny: tuple[str, Path], tmp_path: Path) -> None:
    taken = tmp_path / "taken"
    taken.write_text("keep me")
    one_line_error(explain(tiny, "-o", str(taken)), "--out", "is a file")
    assert taken.read_text() == "keep me"


def test_a_decompression_bomb_is_a_clear_error(
    tiny: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 400)  # 40 x 50 is over twice that: PIL refuses it
    one_line_error(explain(tiny, "-o", str(tmp_path / "o")), "IMAGE:", "rgb.png", "too large")


def test_a_method_name_without_wildcards_gets_suggestions() -> None:
    one_line_error(invoke("methods", "gradcam"), "no registered method matches 'gradcam'", "'grad_cam'")


@pytest.fixture
def store(tmp_path: Path) -> Path:
    with ns.open_run(tmp_path / "runs", name="tiny") as run:
        run.log({"loss": 1.0}, step=0)
    return tmp_path / "runs"


def test_report_into_an_existing_folder_writes_run_report_html_there(store: Path, tmp_path: Path) -> None:
    folder = tmp_path / "reports"
    folder.mkdir()
    res = invoke("report", "tiny", "--store", str(store), "--out", str(folder))
    assert res.exit_code == 0, res.output
    assert "<html" in (folder / "tiny-report.html").read_text()


def test_report_overwrites_and_creates_missing_folders(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "a" / "b" / "r.html"
    for _ in range(2):
        res = invoke("report", "tiny", "--store", str(store), "--out", str(out))
        assert res.exit_code == 0, res.output
    assert out.read_text().count("<html") == 1


def test_report_to_an_unwritable_path_names_the_option(store: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    res = invoke("report", "tiny", "--store", str(store), "--out", str(blocker / "r.html"))
    one_line_error(res, "--out", str(blocker / "r.html"))
