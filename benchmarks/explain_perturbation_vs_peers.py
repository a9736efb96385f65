"""Perturbation methods versus their peers, side by side in one process, at equal sample counts.

- ``kernel_shap`` versus ``shap.KernelExplainer`` and ``lime`` versus ``lime.lime_image.LimeImageExplainer``
  on ResNet-18 (random weights) and one photo (scikit-image's ``chelsea``) at ``--size`` pixels, with the
  same SLIC superpixels given to every library; the peers get the usual user code around the model (a
  numpy masking function, batched forwards of ``--peer-batch`` images).
- ``kernel_shap`` versus ``shap.KernelExplainer`` on a tabular MLP with a background set, and ``lime``
  versus ``lime.lime_tabular.LimeTabularExplainer`` on the same MLP and rows, at each of
  ``--tabular-samples`` (model rows per explained row, equal on both sides).
- ``occlusion`` versus Captum's ``Occlusion`` (its default ``perturbations_per_eval=1``, and batched).

Runs are interleaved (ours, peer, ours, peer, ...), repeated, and the median times and their ratio
(peer / ours, > 1 means netsight is faster) printed, with the agreement (Pearson) of the results.

Threads: torch uses ``--threads`` (its default: one per core); numpy's BLAS (OpenBLAS), which only the
peers call, is held to ``--blas-threads`` (default 1) through ``threadpoolctl``. Left at one thread per
core as well, OpenBLAS's workers keep spinning for a while after each of the peer's numpy calls and
fight torch's threads for the same cores: on 2 cores, netsight's kernel_shap ran 188 ms instead of
90 ms right after a ``shap`` call, and ``shap`` itself ran 1.3-1.7x slower.

    python benchmarks/explain_perturbation_vs_peers.py                    # CPU, 224 px, 300 samples
    python benchmarks/explain_perturbation_vs_peers.py --device cuda --samples 1000 --repeats 5
    python benchmarks/explain_perturbation_vs_peers.py --only tabular,lime_tabular --threads 1 --repeats 5
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torchvision
from torch import nn
from torch.nn import functional as F

import netsight as ns
from netsight.explain._features import make_features

CASES = ("kernel_shap", "lime", "tabular", "lime_tabular", "occlusion")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    _sync(device)
    t0 = time.perf_counter()
    out = fn()
    _sync(device)
    return time.perf_counter() - t0, out


def _pearson(a: Any, b: Any) -> float:
    ta = torch.as_tensor(np.asarray(a, dtype=np.float64)).flatten()
    tb = torch.as_tensor(np.asarray(b, dtype=np.float64)).flatten()
    return float(torch.corrcoef(torch.stack([ta, tb]))[0, 1])


def _compare(  # noqa: PLR0917 - a benchmark helper, called positionally
    name: str,
    ours: Callable[[], Any],
    peer: Callable[[], Any],
    peer_name: str,
    repeats: int,
    device: torch.device,
) -> dict[str, float]:
    """Warm up both, then interleave ``repeats`` runs each; medians, ratio and agreement."""
    _, out_ours = _timed(ours, device)
    _, out_peer = _timed(peer, device)
    t_ours: list[float] = []
    t_peer: list[float] = []
    for _ in range(repeats):
        t, out_ours = _timed(ours, device)
        t_ours.append(t)
        t, out_peer = _timed(peer, device)
        t_peer.append(t)
    mo, mp = statistics.median(t_ours), statistics.median(t_peer)
    r = _pearson(out_ours, out_peer)
    print(
        f"{name:<34} netsight {mo * 1e3:9.1f} ms   {peer_name:<28} {mp * 1e3:9.1f} ms   "
        f"ratio {mp / mo:6.2f}x   Pearson {r:.4f}",
        flush=True,
    )
    return {"ours_s": mo, "peer_s": mp, "ratio": mp / mo, "pearson": r}


def _photo(size: int, device: torch.device) -> tuple[torch.Tensor, np.ndarray]:
    """scikit-image's cat photo at ``size`` px: (ImageNet-normalised ``[1, 3, S, S]``, raw HWC float)."""
    from skimage import data

    img = torch.from_numpy(data.chelsea().copy()).permute(2, 0, 1)[None].float() / 255
    img = F.interpolate(img, size=(size, size), mode="bilinear", align_corners=False)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    x = ((img - mean) / std).to(device)
    return x, x[0].permute(1, 2, 0).cpu().numpy().astype(np.float64)


def _model_fn(
    model: nn.Module, device: torch.device, batch: int, target: int
) -> Callable[[np.ndarray], np.ndarray]:
    """What a user writes for the peers: numpy HWC images in, the target's score out, in batches."""

    def f(imgs: np.ndarray) -> np.ndarray:
        outs = []
        with torch.no_grad():
            for i in range(0, len(imgs), batch):
                t = torch.as_tensor(imgs[i : i + batch], dtype=torch.float32, device=device).permute(
                    0, 3, 1, 2
                )
                outs.append(model(t)[:, target].double().cpu().numpy())
        return np.concatenate(outs)

    return f


def bench_kernel_shap(
    model: nn.Module, x: torch.Tensor, hwc: np.ndarray, seg: torch.Tensor, args: Any
) -> dict[str, float]:
    import shap

    device = x.device
    m = int(seg.max()) + 1
    segments = seg[0, 0].cpu().numpy()
    score = _model_fn(model, device, args.peer_batch, args.target)

    def masked(z: np.ndarray) -> np.ndarray:  # the shap tutorial's mask_image, then the model
        out = np.zeros((z.shape[0], *hwc.shape))
        for i in range(z.shape[0]):
            out[i] = hwc
            for j in np.flatnonzero(z[i] == 0):
                out[i][segments == j] = 0.0
        return score(out)

    explainer = shap.KernelExplainer(masked, np.zeros((1, m)))

    def peer() -> np.ndarray:
        vals = explainer.shap_values(np.ones((1, m)), nsamples=args.samples, l1_reg=False, silent=True)
        return np.asarray(vals).reshape(-1)

    def ours() -> torch.Tensor:
        ex = ns.explain(
            model,
            x,
            target=args.target,
            method="kernel_shap",
            feature_mask=seg,
            n_samples=args.samples,
            baseline=0.0,
        )
        return ex.meta["shapley_values"][0].cpu()

    return _compare(
        f"kernel_shap image (M={m}, n={args.samples})",
        ours,
        peer,
        "shap.KernelExplainer",
        args.repeats,
        device,
    )


def bench_lime(
    model: nn.Module, x: torch.Tensor, hwc: np.ndarray, seg: torch.Tensor, args: Any
) -> dict[str, float]:
    from lime import lime_image

    device = x.device
    m = int(seg.max()) + 1
    segments = seg[0, 0].cpu().numpy()
    score = _model_fn(model, device, args.peer_batch, args.target)

    def classifier(imgs: np.ndarray) -> np.ndarray:
        s = score(imgs)
        out = np.zeros((len(s), args.target + 1))
        out[:, args.target] = s
        return out

    explainer = lime_image.LimeImageExplainer(kernel_width=0.25, random_state=0)

    def peer() -> np.ndarray:
        got = explainer.explain_instance(
            hwc,
            classifier,
            labels=(args.target,),
            top_labels=None,
            hide_color=0,
            num_samples=args.samples,
            batch_size=args.peer_batch,
            segmentation_fn=lambda img: segments,
            random_seed=0,
        )
        coef = np.zeros(m)
        for j, c in got.local_exp[args.target]:
            coef[j] = c
        return coef

    def ours() -> torch.Tensor:
        ex = ns.explain(
            model,
            x,
            target=args.target,
            method="lime",
            feature_mask=seg,
            n_samples=args.samples,
            sampler="bernoulli",
            kernel_width=0.25 * 2**0.5,
            baseline=0.0,
        )
        return ex.meta["coefficients"][0].cpu()

    return _compare(
        f"lime image (M={m}, n={args.samples})", ours, peer, "lime.LimeImageExplainer", args.repeats, device
    )


def _tabular_setup(args: Any, device: torch.device) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """The tabular case: an MLP ``F-64-64-2``, ``--rows`` rows to explain, ``--background`` rows."""
    torch.manual_seed(0)
    f = args.features
    model = (
        nn.Sequential(nn.Linear(f, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 2))
        .to(device)
        .eval()
    )
    x = torch.randn(args.rows, f, device=device)
    background = torch.randn(args.background, f, device=device)
    return model, x, background


def _tabular_score(model: nn.Module, device: torch.device) -> Callable[[np.ndarray], np.ndarray]:
    """What a user writes for the peers: numpy rows in, class 1's logit out (one forward per call)."""

    def score(a: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.as_tensor(a, dtype=torch.float32, device=device))[:, 1].double().cpu().numpy()

    return score


def bench_tabular(args: Any, device: torch.device, samples: int) -> dict[str, float]:
    """``kernel_shap`` with a background set against ``shap.KernelExplainer`` on the same background:
    both average the model over the ``K`` background rows for each of ``samples`` coalitions per row."""
    import shap

    model, x, background = _tabular_setup(args, device)
    explainer = shap.KernelExplainer(_tabular_score(model, device), background.cpu().numpy())

    def peer() -> np.ndarray:
        np.random.seed(0)
        return np.asarray(explainer.shap_values(x.cpu().numpy(), nsamples=samples, l1_reg=False, silent=True))

    def ours() -> torch.Tensor:
        ex = ns.explain(model, x, target=1, method="kernel_shap", background=background, n_samples=samples)
        return ex.attributions.cpu()

    name = f"kernel_shap tabular ({args.rows}x{args.features}, K={args.background}, n={samples})"
    return _compare(name, ours, peer, "shap.KernelExplainer", args.repeats, device)


def bench_lime_tabular(args: Any, device: torch.device, samples: int) -> dict[str, float]:
    """``lime`` against ``lime.lime_tabular.LimeTabularExplainer`` (its defaults: quartile bins, a
    feature is "on" when a sample stays in the row's bin; euclidean kernel of width ``0.75 sqrt(F)``,
    ridge ``alpha=1``), ``samples`` model rows per explained row on both sides. netsight switches a
    column off to the background mean (Bernoulli(1/2) samples, the same kernel: ``sigma = sqrt(2) w``)."""
    from lime import lime_tabular

    model, x, background = _tabular_setup(args, device)
    f = args.features
    train = background.cpu().numpy()
    explainer = lime_tabular.LimeTabularExplainer(train, mode="regression", random_state=0)
    score = _tabular_score(model, device)
    rows = x.cpu().numpy()

    def peer() -> np.ndarray:
        coef = np.zeros((len(rows), f))
        for i, row in enumerate(rows):  # the lime package explains one row per call
            got = explainer.explain_instance(row, score, num_features=f, num_samples=samples)
            for j, c in got.local_exp[1]:  # regression mode: 1 is the score, 0 its negation
                coef[i, j] = c
        return coef

    def ours() -> torch.Tensor:
        ex = ns.explain(
            model,
            x,
            target=1,
            method="lime",
            baseline=background.mean(dim=0),
            n_samples=samples,
            sampler="bernoulli",
            distance="euclidean",
            kernel_width=0.75 * f**0.5 * 2**0.5,
        )
        return ex.attributions.cpu()

    name = f"lime tabular ({args.rows}x{f}, n={samples})"
    return _compare(name, ours, peer, "lime.LimeTabularExplainer", args.repeats, device)


def bench_occlusion(model: nn.Module, x: torch.Tensor, args: Any) -> dict[str, dict[str, float]]:
    from captum.attr import Occlusion

    w, s = args.window, args.window // 2
    occ = Occlusion(model)

    def ours() -> torch.Tensor:
        return ns.explain(model, x, target=args.target, method="occlusion", window=w, stride=s).attributions

    out = {}
    for ppe in (1, args.peer_batch):

        def peer(ppe: int = ppe) -> torch.Tensor:
            return occ.attribute(
                x,
                sliding_window_shapes=(3, w, w),
                strides=(3, s, s),
                baselines=0.0,
                target=args.target,
                perturbations_per_eval=ppe,
            )

        out[f"ppe{ppe}"] = _compare(
            f"occlusion (window {w}, stride {s})",
            ours,
            peer,
            f"captum Occlusion (ppe={ppe})",
            args.repeats,
            x.device,
        )
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--size", type=int, default=224, help="image side in pixels")
    ap.add_argument("--samples", type=int, default=300, help="perturbed samples per explanation (both sides)")
    ap.add_argument("--segments", type=int, default=50, help="SLIC superpixels (n_segments)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--peer-batch", type=int, default=64, help="images per forward in the peers' model function"
    )
    ap.add_argument("--target", type=int, default=281)
    ap.add_argument("--window", type=int, default=32, help="occlusion window side (stride: half)")
    ap.add_argument("--rows", type=int, default=16, help="tabular rows explained")
    ap.add_argument("--features", type=int, default=24, help="tabular columns")
    ap.add_argument("--background", type=int, default=20, help="tabular background rows")
    ap.add_argument(
        "--tabular-samples", default="100,500,2000", help="comma-separated sample counts of the tabular cases"
    )
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument(
        "--blas-threads", type=int, default=1, help="numpy's BLAS threads (0: leave them as they are)"
    )
    ap.add_argument("--only", default=",".join(CASES), help=f"comma-separated subset of {', '.join(CASES)}")
    args = ap.parse_args(argv)
    cases = [c.strip() for c in args.only.split(",") if c.strip()]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        ap.error(f"--only: unknown case(s) {unknown}; choose from {', '.join(CASES)}")
    warnings.filterwarnings("ignore", category=PendingDeprecationWarning)  # matplotlib, imported by shap

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    blas = "as they are"
    if args.blas_threads > 0:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=args.blas_threads, user_api="blas")
        blas = str(args.blas_threads)
    device = torch.device(args.device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(
        f"# perturbation methods vs peers: {where}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads (BLAS: {blas}), {args.size} px, {args.samples} samples, "
        f"median of {args.repeats}",
        flush=True,
    )
    results: dict[str, Any] = {}
    if any(c in cases for c in ("kernel_shap", "lime", "occlusion")):
        torch.manual_seed(0)
        model = torchvision.models.resnet18(num_classes=1000).to(device).eval()
        x, hwc = _photo(args.size, device)
        seg = make_features(x, "slic", n_segments=args.segments).labels  # [1, 1, H, W], shared by all
        if "kernel_shap" in cases:
            results["kernel_shap"] = bench_kernel_shap(model, x, hwc, seg, args)
        if "lime" in cases:
            results["lime"] = bench_lime(model, x, hwc, seg, args)
        if "occlusion" in cases:
            results["occlusion"] = bench_occlusion(model, x, args)
    tab_samples = [int(v) for v in args.tabular_samples.split(",") if v.strip()]
    for n in tab_samples:  # interleaved per sample count: shap's and lime's cases alternate
        if "tabular" in cases:
            results[f"tabular_{n}"] = bench_tabular(args, device, n)
        if "lime_tabular" in cases:
            results[f"lime_tabular_{n}"] = bench_lime_tabular(args, device, n)
    return results


if __name__ == "__main__":
    main()
