"""``netsight.demo.run``: the founding example done right.

Train a small CNN with :func:`netsight.watch` on, show it in the live dashboard, log activation maps of
fixed probe images (captured with one hooked forward pass, never by calling layers on the raw input),
explain test images with several methods, and write a self-contained HTML report of the run.
"""

from __future__ import annotations

import contextlib
import importlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.functional import cross_entropy, interpolate

from netsight.errors import ArgumentError, StoreError

from ._data import DemoData, load
from ._model import DemoCNN

__all__ = ["DEFAULT_METHODS", "DemoResult", "run"]

#: Options per method for 28x28 digits (occlusion: 7x7 windows, stride 3 -> 64 masked forwards per image).
METHOD_OPTIONS: dict[str, dict[str, Any]] = {"occlusion": {"window": 7, "stride": 3}}

#: Methods the demo explains test images with (those registered in this build are used).
DEFAULT_METHODS = ("saliency", "integrated_gradients", "grad_cam", "guided_backprop", "occlusion")

#: Layers whose feature maps are drawn for the probe images.
MAP_LAYERS = ("features.relu1", "features.relu2")

#: Layer the layer-attribution methods (Grad-CAM and friends) attribute to: 14x14 on the digits.
CAM_LAYER = "features.relu2"

Echo = Callable[[str], None]


@dataclass(frozen=True)
class DemoResult:
    """What a demo run produced.

    Attributes:
        store: the run store directory.
        run: the run's name in the store.
        test_accuracy: accuracy on the held-out test images after the last epoch.
        epoch_accuracies: test accuracy after each epoch.
        steps: optimizer steps taken.
        seconds: wall time of the whole demo.
        report: the HTML report written, or None when ``report=False``.
        url: the dashboard's address, or None when it was not started.
        methods: the explanation methods that ran.
        notes: what was skipped and why (a missing optional part, an unregistered method).
        server: the running dashboard's handle when ``keep_serving=True`` (call ``.stop()``), else None.
        model: the trained model (in eval mode), to explore further.
        probe_indices: the test images whose activation maps were logged (keys ``probe<i>/<layer>``).
        explained_indices: the test images that were explained (``log_explanation`` index ``i``).
        data: the data it was trained and tested on.
    """

    store: Path
    run: str
    test_accuracy: float
    epoch_accuracies: tuple[float, ...]
    steps: int
    seconds: float
    report: Path | None
    url: str | None
    methods: tuple[str, ...]
    notes: tuple[str, ...] = field(default=())
    server: Any = field(default=None, repr=False, compare=False)
    model: nn.Module | None = field(default=None, repr=False, compare=False)
    probe_indices: tuple[int, ...] = ()
    explained_indices: tuple[int, ...] = ()
    data: DemoData | None = field(default=None, repr=False, compare=False)


def _quiet(_: str) -> None:
    return None


def _bar(total: int, desc: str, progress: bool) -> Any:
    """A tqdm progress bar when tqdm is installed and ``progress`` is on, else None."""
    if not progress:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, unit="batch", leave=True, dynamic_ncols=True)


def _optional(module: str) -> Any | None:
    """Import an optional part of netsight; None when this build does not have it."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module == exc.name or module.startswith(exc.name + ".")):
            return None
        raise


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 1000) -> torch.Tensor:
    """Test accuracy as a 0-d tensor (one transfer when it is printed)."""
    was = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=x.device)
    with torch.no_grad():
        for i in range(0, x.shape[0], batch):
            correct += (model(x[i : i + batch]).argmax(1) == y[i : i + batch]).sum()
    model.train(was)
    return correct.float() / x.shape[0]


def _probe_indices(y: torch.Tensor, n: int) -> list[int]:
    """The first test image of each of the first ``n`` classes: fixed probes that differ from each other."""
    classes = sorted({int(c) for c in y[:500].tolist()})
    return [int((y == c).nonzero()[0, 0]) for c in classes[:n]]


def _upscale(pictures: torch.Tensor, size: int) -> torch.Tensor:
    """Pictures ``[B, C, h, w]`` in [0, 1] to ``[B, C, size, size]`` (nearest, so pixels stay sharp)."""
    if pictures.shape[-1] >= size:
        return pictures
    return interpolate(pictures, size=(size, size), mode="nearest")


def _log_activation_maps(
    run: Any, model: nn.Module, probes: torch.Tensor, step: int, layers: Sequence[str]
) -> int:
    """Capture the probes' feature maps in ONE forward pass and log a channel grid per layer and probe."""
    import netsight as ns
    from netsight.render import feature_grid

    was = model.training
    model.eval()
    try:
        with torch.no_grad(), ns.capture(model, layers=list(layers)) as cap:
            model(probes)
    finally:
        model.train(was)
    count = 0
    for layer in layers:
        rec = cap[layer]
        for i in range(probes.shape[0]):
            grid = feature_grid(rec, sample=i, scale=3 if rec.activation.shape[-1] <= 14 else 2)
            run.log_image(step, f"probe{i}/{layer}", grid, layer=layer, kind="activation_map")
            count += 1
    return count


def _explain(
    run: Any,
    *,
    model: nn.Module,
    data: DemoData,
    idx: Sequence[int],
    methods: Sequence[str],
    step: int,
    echo: Echo,
    progress: bool,
) -> tuple[list[str], list[str]]:
    """Explain the test images ``idx`` with each registered method; log one overlay per image and method."""
    import netsight as ns
    from netsight.render import overlay

    explain_mod = _optional("netsight.explain")
    if explain_mod is None:
        return [], ["explanations skipped: netsight.explain is not part of this build"]
    registered = set(explain_mod.list_methods())
    ran: list[str] = []
    x = data.x_test[list(idx)]
    y = data.y_test[list(idx)]
    model.eval()  # explain the trained model as it predicts (BatchNorm uses its running statistics)
    with torch.no_grad():
        pred = model(x).argmax(1)
    pictures = _upscale(data.pictures(x), 112)
    for i in range(len(idx)):
        run.log_image(step, f"input/{i}", _to_hwc_uint8(pictures[i]), kind="input")
    todo = [m for m in methods if m in registered]
    notes = [f"method {m!r} skipped: not registered in this build" for m in methods if m not in registered]
    bar = _bar(len(todo), "explain", progress)
    try:
        for method in todo:
            info = explain_mod.get_method(method)
            layer = CAM_LAYER if info.needs_layer else None
            options = METHOD_OPTIONS.get(method, {}) if data.image_size <= 32 else {}
            ex = ns.explain(
                model,
                x,
                target=pred,
                method=method,
                layer=layer,
                progress=None if progress else False,
                **options,
            )
            maps = ex.attributions.detach()
            if maps.dim() == 4 and maps.shape[1] > 1:
                maps = maps.sum(dim=1, keepdim=True)  # one map per image
            if info.kind != "layer":  # signed pixel attributions: show their magnitude
                maps = maps.abs()
            over = overlay(pictures, maps)  # uint8 [B, 112, 112, 3]
            for i in range(len(idx)):
                meta = {
                    "label": data.classes[int(y[i])],
                    "predicted": data.classes[int(pred[i])],
                    "shown": "attribution" if info.kind == "layer" else "|attribution|",
                }
                if ex.layer:
                    meta["layer"] = ex.layer
                run.log_explanation(step, method, i, over[i], meta=meta)
            ran.append(method)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    echo(f"explained {len(idx)} test images with {', '.join(ran) or 'no method'}")
    return ran, notes


def _to_hwc_uint8(picture: torch.Tensor) -> torch.Tensor:
    """``[C, H, W]`` in [0, 1] to uint8 ``[H, W, 3]``."""
    from netsight.render import to_uint8

    img = picture.permute(1, 2, 0)
    if img.shape[-1] == 1:
        img = img.expand(-1, -1, 3)
    return to_uint8(img).contiguous()


def _start_dashboard(store: Path, *, host: str, port: int, echo: Echo, notes: list[str]) -> Any:
    """Start the live dashboard in a background thread; None when this build has no dashboard."""
    server_mod = _optional("netsight.server")
    if server_mod is None or not hasattr(server_mod, "serve"):
        notes.append("dashboard not started: netsight.server is not part of this build")
        echo("dashboard not started: netsight.server is not part of this build (use --no-serve)")
        return None
    return server_mod.serve(str(store), host=host, port=port, background=True)


def _stop(handle: Any) -> None:
    stop = getattr(handle, "stop", None) or getattr(handle, "close", None)
    if callable(stop):
        stop()


def dashboard_url(handle: Any, host: str, port: int) -> str | None:
    """The address of a started dashboard."""
    if handle is None:
        return None
    url = handle if isinstance(handle, str) else getattr(handle, "url", None)
    return str(url) if url else f"http://{host}:{port}/"


def run(
    *,
    data: str = "mnist",
    epochs: int = 3,
    store: str | Path = "netsight-runs",
    name: str | None = None,
    seed: int = 0,
    serve: bool = True,
    host: str = "127.0.0.1",
    port: int = 8765,
    train_size: int = 8000,
    test_size: int = 2000,
    batch_size: int = 64,
    lr: float = 2e-3,
    methods: Sequence[str] = DEFAULT_METHODS,
    explain_images: int = 6,
    probes: int = 3,
    report: bool | str | Path = True,
    data_dir: str | Path | None = None,
    device: str | torch.device = "cpu",
    progress: bool = True,
    echo: Echo | None = None,
    on_dashboard: Callable[[str], None] | None = None,
    keep_serving: bool = False,
) -> DemoResult:
    """Train a small CNN with the monitor on, explain it, and write a report: netsight's first example.

    ::

        import netsight.demo
        result = netsight.demo.run(epochs=3, serve=False)
        result.test_accuracy, result.report        # about 0.97, Path("netsight-runs/reports/...html")

    Args:
        data: ``"mnist"`` (the 10,000 shipped digits, offline) or ``"cifar10"`` (torchvision; found in
            ``data_dir`` or downloaded there).
        epochs: passes over the training images.
        store: the run store directory (created if missing).
        name: the run's name (default ``"demo-<data>"``; a suffix is added when taken).
        seed: seeds the shuffle, the split and the weights.
        serve: start the live dashboard in a background thread while training.
        host, port: where the dashboard listens.
        train_size, test_size: images used for training and testing (default 8000 / 2000).
        batch_size, lr: Adam's batch size and learning rate.
        methods: explanation methods to run on test images (unregistered ones are skipped, with a note).
        explain_images: how many test images to explain.
        probes: how many fixed probe images get activation maps.
        report: write the HTML report (True: ``<store>/reports/<run>.html``; or a path; False: none).
        data_dir: where CIFAR-10 is (or is downloaded to).
        device: where to train (``"cuda"`` on a GPU machine).
        progress: show progress bars (tqdm).
        echo: called with one line per event (e.g. ``print``); silent when None.
        on_dashboard: called with the dashboard's URL once it is up.
        keep_serving: leave the dashboard running when the demo returns (``result.server.stop()`` ends
            it); by default it stops with the demo.

    Returns:
        a :class:`DemoResult`.
    """
    import netsight as ns

    say = echo or _quiet
    if epochs < 1:
        raise ArgumentError(f"epochs: expected at least 1, got {epochs}.")
    if batch_size < 1:
        raise ArgumentError(f"batch_size: expected a positive batch size, got {batch_size}.")
    store_mod = _optional("netsight.store")
    if store_mod is None:
        raise StoreError(
            "store: the demo records its run in netsight's run store, which is not part of this build "
            "(netsight.store is missing); install a complete netsight."
        )
    t0 = time.perf_counter()
    notes: list[str] = []
    dev = torch.device(device)
    ds = load(data, seed=seed, train_size=train_size, test_size=test_size, root=data_dir)
    x_train, y_train = ds.x_train.to(dev), ds.y_train.to(dev)
    x_test, y_test = ds.x_test.to(dev), ds.y_test.to(dev)
    ds = DemoData(ds.name, x_train, y_train, x_test, y_test, ds.classes, ds.mean, ds.std)
    torch.manual_seed(seed)
    model = DemoCNN(ds.channels, len(ds.classes), ds.image_size).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    probe_idx = _probe_indices(ds.y_test.cpu(), probes)
    probe_x = x_test[probe_idx]
    explain_idx = list(range(min(explain_images, x_test.shape[0])))
    store_dir = Path(store)
    config = {
        "data": ds.name,
        "epochs": epochs,
        "seed": seed,
        "train_size": int(x_train.shape[0]),
        "test_size": int(x_test.shape[0]),
        "batch_size": batch_size,
        "lr": lr,
        "model": "DemoCNN",
        "device": str(dev),
    }
    handle: Any = None
    url: str | None = None
    report_path: Path | None = None
    rec = ns.open_run(store_dir, name=name or f"demo-{ds.name}", config=config)
    try:
        with rec:
            run_name = str(rec.name)
            if serve:
                handle = _start_dashboard(store_dir, host=host, port=port, echo=say, notes=notes)
                url = dashboard_url(handle, host, port)
                if url is not None:
                    say(f"dashboard: {url}")
                    if on_dashboard is not None:
                        on_dashboard(url)
            say(f"run {run_name!r} in {store_dir}")
            accs, step = _train(
                rec,
                model=model,
                opt=opt,
                data=ds,
                epochs=epochs,
                batch_size=batch_size,
                gen=gen,
                probe_x=probe_x,
                echo=say,
                notes=notes,
                progress=progress,
            )
            ran, more = _explain(
                rec,
                model=model,
                data=ds,
                idx=explain_idx,
                methods=methods,
                step=step,
                echo=say,
                progress=progress,
            )
            notes.extend(more)
        if report:
            from netsight.render.report import write_report

            report_path = (
                Path(report) if not isinstance(report, bool) else store_dir / "reports" / f"{run_name}.html"
            )
            write_report(store_dir, run_name, report_path)
            say(f"report: {report_path}")
    except BaseException:
        if handle is not None:
            _stop(handle)
        raise
    if handle is not None and not keep_serving:
        _stop(handle)
        handle = None
    return DemoResult(
        store=store_dir,
        run=run_name,
        test_accuracy=accs[-1],
        epoch_accuracies=tuple(accs),
        steps=step,
        seconds=time.perf_counter() - t0,
        report=report_path,
        url=url,
        methods=tuple(ran),
        notes=tuple(notes),
        server=handle,
        model=model.eval(),
        probe_indices=tuple(probe_idx),
        explained_indices=tuple(explain_idx),
        data=ds,
    )


def _train(
    rec: Any,
    *,
    model: nn.Module,
    opt: torch.optim.Optimizer,
    data: DemoData,
    epochs: int,
    batch_size: int,
    gen: torch.Generator,
    probe_x: torch.Tensor,
    echo: Echo,
    notes: list[str],
    progress: bool,
) -> tuple[list[float], int]:
    """The training loop with ``ns.watch`` on; activation maps at the start, early on and every epoch."""
    x_train, y_train = data.x_train, data.y_train
    batches = (x_train.shape[0] + batch_size - 1) // batch_size
    accs: list[float] = []
    step = 0
    monitor_mod = _optional("netsight.monitor")
    if monitor_mod is None:
        notes.append("per-layer statistics skipped: netsight.monitor is not part of this build")
        echo(notes[-1])
    watcher = (
        monitor_mod.watch(model, optimizer=opt, run=rec)
        if monitor_mod is not None
        else contextlib.nullcontext()
    )
    with watcher:
        _log_activation_maps(rec, model, probe_x, 0, MAP_LAYERS)
        early = max(1, batches // 10)
        for epoch in range(epochs):
            model.train()
            perm = torch.randperm(x_train.shape[0], generator=gen).to(x_train.device)
            bar = _bar(batches, f"epoch {epoch + 1}/{epochs}", progress)
            try:
                for b in range(batches):
                    idx = perm[b * batch_size : (b + 1) * batch_size]
                    out = model(x_train[idx])
                    loss = cross_entropy(out, y_train[idx])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()  # type: ignore[no-untyped-call]
                    opt.step()
                    step += 1
                    acc = (out.detach().argmax(1) == y_train[idx]).float().mean()
                    rec.log({"loss": loss.detach(), "train_acc": acc}, step=step)
                    if epoch == 0 and b + 1 == early:
                        _log_activation_maps(rec, model, probe_x, step, MAP_LAYERS)
                    if bar is not None:
                        bar.update(1)
                        if b % 25 == 0:
                            bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
            finally:
                if bar is not None:
                    bar.close()
            test_acc = _accuracy(model, data.x_test, data.y_test)
            rec.log({"test_acc": test_acc}, step=step)
            accs.append(float(test_acc))
            _log_activation_maps(rec, model, probe_x, step, MAP_LAYERS)
            echo(f"epoch {epoch + 1}/{epochs}: test accuracy {accs[-1]:.2%}")
    return accs, step
