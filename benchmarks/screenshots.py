"""The dashboard screenshots in docs/images/: a real run, then each view in headless Chromium.

    python benchmarks/screenshots.py                 # writes docs/images/dashboard-<view>.png
    python benchmarks/screenshots.py --out /tmp/shots --steps 200

The run is real: a small CNN trained on the shipped MNIST digits with ``ns.watch`` (gradient flow,
activation statistics, δ, histograms, activation maps of a probe batch, the module tree), explanations
of four test digits with ``ns.explain``, an attention head view of a small ``nn.TransformerEncoder``
(``ns.attention`` + ``netsight.attention.html.head_view``), and a second, deliberately broken run (a
deep sigmoid MLP) whose alerts fill the Alerts view. PNGs are quantised to 256 colours to stay small.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import netsight as ns

VIEWS = {
    "runs": "runs",
    "scalars": "scalars",
    "grads": "grads",
    "activations": "activations",
    "histograms": "histograms",
    "backprop": "backprop",
    "actmaps": "actmaps",
    "explanations": "explanations",
    "alerts": "alerts",
    "attention": "attention",
}


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(32 * 7 * 7, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def train_cnn(store: Path, steps: int, device: str) -> None:
    from netsight.data import load_mnist

    x, y = load_mnist()
    x, y = x.to(device), y.to(device)
    model = Net().to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    probe = x[9000:9004]
    gen = torch.Generator().manual_seed(0)
    with ns.open_run(store, name="mnist-cnn", config={"lr": 0.05, "momentum": 0.9, "batch": 64}) as run:
        with ns.watch(model, optimizer=opt, run=run, probe=probe):
            for step in range(steps):
                idx = torch.randint(0, 8000, (64,), generator=gen).to(device)
                out = model(x[idx])
                loss = F.cross_entropy(out, y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                acc = (out.argmax(1) == y[idx]).float().mean()
                run.log({"loss": loss.detach(), "train_acc": acc}, step=step)
        model.eval()
        images = x[9100:9104]
        pictures = (images.repeat(1, 3, 1, 1).permute(0, 2, 3, 1) * 255).to(torch.uint8).cpu()
        for method in ("saliency", "integrated_gradients", "grad_cam", "occlusion"):
            exp = ns.explain(model, images, target=y[9100:9104], method=method)
            overlays = exp.overlay(pictures)
            for i in range(len(images)):
                run.log_explanation(steps, method, i, overlays[i], meta={"target": int(y[9100 + i])})


def train_broken(store: Path, device: str) -> None:
    from netsight.data import load_mnist

    hidden: list[nn.Module] = []
    for _ in range(12):
        hidden += [nn.Linear(32, 32), nn.Sigmoid()]
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.Sigmoid(), *hidden, nn.Linear(32, 10))
    model = model.to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    x, y = load_mnist()
    run = ns.open_run(store, name="deep-sigmoid", config={"lr": 0.5, "depth": 14})
    with run, ns.watch(model, optimizer=opt, run=run):
        for step in range(120):
            xb, yb = x[step * 32 : step * 32 + 32].to(device), y[step * 32 : step * 32 + 32].to(device)
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            run.log({"loss": loss.detach()}, step=step)


def attention_page(store: Path) -> None:
    from netsight.attention.html import head_view

    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(d_model=32, nhead=4, dim_feedforward=64, batch_first=True)
    encoder = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False).eval()
    tokens = ["[CLS]", "the", "network", "learns", "to", "see", "[SEP]"]
    emb = torch.randn(1, len(tokens), 32)
    maps = ns.attention(encoder, emb, tokens=tokens)
    with ns.open_run(store, name="mnist-cnn", resume=True) as run:
        run.log_text("attention/encoder", head_view(maps, tokens))


def shoot(store: Path, out: Path) -> list[Path]:
    from PIL import Image
    from playwright.sync_api import sync_playwright

    exe = shutil.which("chromium")
    if exe is None:
        raise SystemExit("chromium is not installed (apt-get install -y chromium)")
    handle = ns.serve(store, port=0, background=True)
    assert handle is not None
    written = []
    errors: list[str] = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=exe,
                args=[
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                    "--disable-component-update",
                ],
            )
            page = browser.new_page(viewport={"width": 1280, "height": 820})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            for name, view in VIEWS.items():
                run = "deep-sigmoid" if name == "alerts" else "mnist-cnn"
                page.goto(f"{handle.url}#/{view}?run={run}")
                page.wait_for_selector(f"body[data-rendered={view}]", timeout=60_000)
                page.wait_for_timeout(800)  # images and plotly transitions
                path = out / f"dashboard-{name}.png"
                page.screenshot(path=str(path))
                Image.open(path).convert("RGB").quantize(colors=256).save(path, optimize=True)
                written.append(path)
            browser.close()
    finally:
        handle.stop()
    if errors:
        raise SystemExit(f"console errors while taking the screenshots: {errors}")
    return written


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "images")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--store", type=Path, default=None, help="keep the run store here (default: a temp dir)")
    args = ap.parse_args()
    store = args.store or Path(tempfile.mkdtemp(prefix="netsight-shots-"))
    args.out.mkdir(parents=True, exist_ok=True)
    if args.store is not None and (args.store / "mnist-cnn.sqlite").exists():
        print(f"reusing the runs in {store}")
    else:
        train_cnn(store, args.steps, args.device)
        train_broken(store, args.device)
        attention_page(store)
    for path in shoot(store, args.out):
        print(f"{path}  {path.stat().st_size // 1024} KiB")


if __name__ == "__main__":
    main()
