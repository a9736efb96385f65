"""``netsight explain IMAGE... --model MODEL --method NAME --out DIR``: overlays and an index page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ._app import app, console, fail, resolve_methods, run_command

__all__ = ["explain"]


@app.command("explain")
def explain(
    *,
    images: list[Path] = typer.Argument(
        ..., help="Image files (PNG or JPEG) to explain, e.g. photos/*.png.", show_default=False
    ),
    model: str = typer.Option(
        ...,
        "--model",
        "-m",
        help="torchvision:NAME, timm:NAME, a TorchScript or saved-module file (m.pt), or file.py:factory.",
        show_default=False,
    ),
    method: list[str] = typer.Option(
        ["grad_cam"], "--method", help="Method name (repeat for several; see 'netsight methods')."
    ),
    target: int | None = typer.Option(
        None, "--target", "-t", help="Class index to explain (default: each image's predicted class)."
    ),
    layer: str | None = typer.Option(
        None,
        "--layer",
        "-l",
        help="Module path for layer methods, e.g. layer4 (default: found automatically).",
    ),
    out: Path = typer.Option(
        Path("netsight-explain"),
        "--out",
        "-o",
        help=(
            "Folder for the PNGs and index.html. index.html shows this run's images and methods only: "
            "PNGs left by earlier runs stay in the folder but are not listed (explain all methods in one "
            "run, or use one folder per run)."
        ),
    ),
    weights: Path | None = typer.Option(
        None,
        "--weights",
        help="State dict (torch.save(model.state_dict(), PATH)) loaded strictly into a torchvision:, timm: "
        "or file.py:factory model.",
    ),
    pretrained: bool = typer.Option(
        False, "--pretrained", help="Download the published weights (torchvision/timm); needs the network."
    ),
    size: int = typer.Option(224, "--size", help="Shorter side resized to SIZE, then centre-cropped."),
    mean: str | None = typer.Option(
        None,
        "--mean",
        help="Per-channel mean subtracted from pixels in [0, 1]: comma-separated, one per channel or one "
        "for all (default: ImageNet's 0.485,0.456,0.406 for a 3-channel model; 0 for a 1-channel one, "
        "as netsight's MNIST demo feeds its model).",
        show_default=False,
    ),
    std: str | None = typer.Option(
        None,
        "--std",
        help="Per-channel standard deviation pixels are divided by, like --mean (default: ImageNet's "
        "0.229,0.224,0.225 for 3 channels; 1 for 1 channel, i.e. pixels in [0, 1]).",
        show_default=False,
    ),
    batch: int = typer.Option(
        16, "--batch", help="Images read and explained together; lower it when memory runs out."
    ),
    alpha: float = typer.Option(0.5, "--alpha", help="Weight of the heatmap in the overlay (0..1)."),
    cmap: str = typer.Option("jet", "--cmap", help="Colour map of the heatmap (jet, viridis, magma, ...)."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:1, mps ..."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Explain a model's predictions on image files: one overlay PNG per image and method, plus index.html.

    Images are resized and centre-cropped, read as RGB or grayscale as the model's first convolution
    takes them (`in_channels` 3 or 1), and normalised with `--mean`/`--std` (default: ImageNet's for RGB;
    pixels in [0, 1] for grayscale, as the MNIST demo trains). Without
    `--pretrained`, torchvision and timm models get random weights: good for trying the tool offline, not
    for interpreting.

    **Examples**

    ```
    netsight explain cat.png --model torchvision:resnet18 --method grad_cam --out out/
    netsight explain a.jpg b.jpg -m torchvision:resnet50 --pretrained \\
        --method grad_cam --method integrated_gradients
    netsight explain x.png -m model.py:build --weights best.pt --layer features.8 --target 3
    netsight explain x.png -m scripted.pt --method occlusion
    netsight explain digit.png -m mnistmodel.py:build --weights cnn.pt --size 28 --mean 0.1307 --std 0.3081
    ```

    Then open `out/index.html` in a browser. `netsight methods` lists the method names.
    """

    def body() -> None:
        import torch

        import netsight as ns
        from netsight.render import save_png, to_uint8
        from netsight.render.report import gallery_html

        from ._models import input_channels, load_images, load_model, normalisation

        err = console(stderr=True)
        infos = resolve_methods(method)  # a wrong name fails here, before any work
        if not 0.0 <= alpha <= 1.0:
            fail(f"--alpha: expected a weight in [0, 1], got {alpha}.")
        if size < 1:
            fail(f"--size: expected a side of at least 1 pixel, got {size}. Pass e.g. --size 224.")
        if out.exists() and not out.is_dir():
            fail(f"--out: {str(out)!r} is a file; pass a folder for the PNGs and index.html.")
        if batch < 1:
            fail(f"--batch: expected at least 1 image per batch, got {batch}. Pass e.g. --batch 16.")
        folders = [p for p in images if p.is_dir()]
        if folders:
            fail(f"IMAGE: {str(folders[0])!r} is a folder; pass image files, e.g. {folders[0] / '*.png'}.")
        missing = [p for p in images if not p.is_file()]
        if missing:  # before any work, not when its batch comes
            fail(f"IMAGE: no such file {str(missing[0])!r}.")
        dev = _device(device)
        loaded = load_model(model, weights=weights, pretrained=pretrained)
        channels = input_channels(loaded.model) or 3
        if channels not in (1, 3):
            fail(
                f"--model: the first convolution of {loaded.spec} takes {channels} input channels; netsight "
                "explain reads images as 1 (grayscale) or 3 (RGB) channels."
            )
        norm_mean, norm_std = normalisation(channels, mean, std)
        layered = [info.name for info in infos if info.needs_layer]
        if loaded.scripted and layered:
            fail(
                f"--method: {', '.join(layered)} attribute to a layer inside the model, and a TorchScript "
                "model takes no hooks; use an input method (saliency, integrated_gradients, occlusion) or "
                "load the Python model (file.py:factory --weights state_dict.pt)."
            )
        net = loaded.model.to(dev)
        out.mkdir(parents=True, exist_ok=True)
        stems = _unique_stems(images)
        cats = loaded.categories
        rows = []
        cells = 0
        bar = _progress(len(images) * len(infos), progress)
        try:
            for first in range(0, len(images), batch):  # one batch of images in memory at a time
                paths, names = images[first : first + batch], stems[first : first + batch]
                pictures, x = load_images(
                    list(paths), size=size, channels=channels, mean=norm_mean, std=norm_std
                )
                x = x.to(dev)
                with torch.no_grad():
                    probs = net(x).softmax(-1)
                pred = probs.argmax(-1)
                if target is not None and not 0 <= target < probs.shape[-1]:
                    fail(
                        f"--target: class {target} is outside the model's {probs.shape[-1]} outputs "
                        f"(0..{probs.shape[-1] - 1})."
                    )
                for i, stem in enumerate(names):
                    save_png(to_uint8(pictures[i].permute(1, 2, 0)).contiguous(), out / f"{stem}.png")
                drawn: dict[tuple[int, str], str] = {}
                for info in infos:
                    ex = ns.explain(
                        net,
                        x,
                        target=target,
                        method=info.name,
                        layer=layer if info.needs_layer else None,
                        progress=None if progress else False,  # a long method also gets a bar of its own
                    )
                    over = ex.overlay(pictures.to(dev), cmap=cmap, alpha=alpha)  # uint8 [B, H, W, 3]
                    for i, stem in enumerate(names):
                        name = f"{stem}_{info.name}.png"
                        save_png(over[i], out / name)
                        drawn[(i, info.name)] = name
                    if bar is not None:
                        bar.update(len(paths))
                for i, stem in enumerate(names):
                    cls = int(pred[i]) if target is None else target
                    label = cats[cls] if cats and cls < len(cats) else f"class {cls}"
                    rows.append(
                        (
                            f"{paths[i].name}: {label} (p={float(probs[i, cls]):.3f})",
                            [f"{stem}.png"] + [drawn[(i, info.name)] for info in infos],
                        )
                    )
                cells += len(drawn)
        finally:
            if bar is not None:
                bar.close()
        random = not pretrained and weights is None and ":" in model
        sub = f"model {loaded.spec}" + (" (random weights)" if random else "")
        page = gallery_html("netsight explain", ["input", *[info.name for info in infos]], rows, subtitle=sub)
        index = out / "index.html"
        index.write_text(page, encoding="utf-8")
        err.print(
            f"wrote {cells} overlays and [bold]{index}[/bold] (it shows this run: {len(images)} image"
            f"{'s' if len(images) != 1 else ''} x {', '.join(info.name for info in infos)})"
        )

    run_command(body)


def _unique_stems(paths: list[Path]) -> list[str]:
    """File stems, made unique (``cat``, ``cat-2``) so two images never overwrite each other's PNGs."""
    seen: dict[str, int] = {}
    stems = []
    for p in paths:
        stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in p.stem) or "image"
        seen[stem] = seen.get(stem, 0) + 1
        stems.append(stem if seen[stem] == 1 else f"{stem}-{seen[stem]}")
    return stems


def _device(name: str) -> Any:
    """``torch.device(name)``, failing with one line when it is malformed or absent on this machine."""
    import torch

    try:
        dev = torch.device(name)
    except RuntimeError:
        fail(f"--device: {name!r} is not a device; pass cpu, cuda, cuda:1 or mps.")
    if dev.type == "cuda" and not torch.cuda.is_available():
        fail(f"--device: {name!r} asks for CUDA, which is not available here; pass --device cpu.")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        fail(f"--device: {name!r}: this machine has {torch.cuda.device_count()} CUDA devices; pass cuda:0.")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        fail(f"--device: {name!r} asks for MPS, which is not available here; pass --device cpu.")
    return dev


def _progress(total: int, on: bool) -> Any:
    if not on:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    # disable=None: tqdm's own rule, no bar when stderr is not a terminal (no \r lines in logs)
    return tqdm(total=total, desc="explain", unit="overlay", disable=None)
