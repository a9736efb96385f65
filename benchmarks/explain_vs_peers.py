"""netsight's explain methods side by side with Captum and pytorch-grad-cam (issue 3).

One process, the same model and inputs for everyone; contenders are interleaved within each repeat,
and medians and median ratios are printed. The model has random weights with calibrated BatchNorm
statistics (a few train-mode forwards on noise), so it is as non-linear as a trained network (with
torchvision's default statistics a random ResNet is positively homogeneous and every integral is exact).

    python benchmarks/explain_vs_peers.py                       # CPU, ResNet-18, batch 16, 224 px
    python benchmarks/explain_vs_peers.py --device cuda --model resnet50 --batch 64

Integrated gradients compare at equal completeness error: Captum's default (50 Gauss-Legendre steps,
with its convergence delta) first gives each sample's error; netsight's adaptive mode (the adaptive
trapezoid rule) then runs with ``tolerance`` = the mean of those errors, so every sample it returns is
within Captum's mean error: its mean and its max error are at most Captum's mean and max (both
printed, with medians, and checked). ``--ig-reference N`` also prints each map's relative L2 distance
to Captum's ``N``-step integral, which completeness (one number per sample) does not measure. The
perturbation benchmark (``explain_perturbation_vs_peers.py``) runs at the end when present.

``--profile`` follows the Grad-CAM race with a ``torch.profiler`` pass over netsight and Captum (five
calls each): the device time, the host's waits for the device (synchronising runtime calls and
device-to-host copies) and the most expensive operators of each, to tell where a gap between them lies.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

import netsight as ns


def calibrated(model: nn.Module, size: int, device: torch.device) -> nn.Module:
    g = torch.Generator(device="cpu").manual_seed(0)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn((8, 3, size, size), generator=g).to(device))
    return model.eval()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device) -> float:
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def race(contenders: dict[str, Callable[[], object]], repeats: int, device: torch.device) -> dict[str, float]:
    """Warm each contender once, then run them interleaved ``repeats`` times; median seconds."""
    for fn in contenders.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in contenders}
    for r in range(repeats):
        order = list(contenders) if r % 2 == 0 else list(reversed(contenders))
        for k in order:
            times[k].append(timed(contenders[k], device))
    return {k: statistics.median(v) for k, v in times.items()}


def report(title: str, med: dict[str, float], base: str, images: int) -> None:
    print(f"\n{title}")
    for k, v in med.items():
        ratio = v / med[base]
        print(f"  {k:<44} {v * 1000:9.1f} ms  {images / v:8.1f} img/s  {ratio:5.2f}x netsight's time")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--model", default="resnet18", choices=["resnet18", "resnet50"])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--ig-batch", type=int, default=None, help="IG batch (default: --batch)")
    p.add_argument("--ig-size", type=int, default=None, help="IG image size (default: 112 on CPU)")
    p.add_argument("--ig-repeats", type=int, default=5)
    p.add_argument(
        "--ig-reference", type=int, default=0, help="IG: distance of each map to Captum with N steps (0: off)"
    )
    p.add_argument("--ig-no-fixed", action="store_true", help="IG: leave netsight's 50 steps out of the race")
    p.add_argument(
        "--captum-tuned-batch",
        type=int,
        default=128,
        help="IG on the CPU: also race Captum with this internal_batch_size (0: off)",
    )
    p.add_argument("--skip-perturbation", action="store_true")
    p.add_argument(
        "--captum-internal-batch", type=int, default=None, help="Captum IG internal_batch_size (GPU: 512)"
    )
    p.add_argument("--profile", action="store_true", help="profile Grad-CAM: netsight and Captum (5 calls)")
    p.add_argument("--only", default="grad_cam,saliency,ig", help="comma-separated: grad_cam, saliency, ig")
    args = p.parse_args(argv)

    import torchvision

    device = torch.device(args.device)
    torch.manual_seed(0)
    model = calibrated(getattr(torchvision.models, args.model)().to(device), args.size, device)
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    target = torch.randint(1000, (args.batch,), device=device)
    cpu_name = "CPU" if device.type == "cpu" else torch.cuda.get_device_name(device)
    print(
        f"explain vs peers: {args.model}, batch {args.batch}, {args.size} px, {device} ({cpu_name}), "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.repeats} repeats"
    )

    only = set(args.only.split(","))
    if "grad_cam" in only:
        grad_cam_race(model, x, target, args, device)
    if "saliency" in only:
        saliency_race(model, x, target, args, device)
    if "ig" in only:
        ig_race(model, target, args, device)

    # -- perturbation methods (explain engineer B) ---------------------------------------------------
    other = Path(__file__).with_name("explain_perturbation_vs_peers.py")
    if other.exists() and not args.skip_perturbation:
        spec = importlib.util.spec_from_file_location("explain_perturbation_vs_peers", other)
        if spec is not None and spec.loader is not None:
            mod = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = mod
            spec.loader.exec_module(mod)
            print("\n" + "=" * 100)
            mod.main(["--device", args.device])


def grad_cam_race(
    model: nn.Module, x: torch.Tensor, target: torch.Tensor, args: argparse.Namespace, device: torch.device
) -> None:
    from captum.attr import LayerAttribution, LayerGradCam
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    n = x.shape[0]
    lgc = LayerGradCam(model, model.layer4)

    def captum_gc() -> torch.Tensor:
        raw = lgc.attribute(x, target=target, relu_attributions=True)
        return LayerAttribution.interpolate(raw, (args.size, args.size), interpolate_mode="bilinear")

    pgc_model = copy.deepcopy(model)  # pytorch-grad-cam keeps its hooks while the object lives
    pgc_targets = [ClassifierOutputTarget(int(t)) for t in target]
    with GradCAM(model=pgc_model, target_layers=[pgc_model.layer4[-1]]) as pgc:
        med = race(
            {
                "netsight grad_cam": lambda: ns.explain(model, x, target, method="grad_cam", layer="layer4"),
                "captum LayerGradCam + interpolate": captum_gc,
                "pytorch-grad-cam GradCAM": lambda: pgc(input_tensor=x, targets=pgc_targets),
            },
            args.repeats,
            device,
        )
    report("Grad-CAM (layer4, upsampled to the input)", med, "netsight grad_cam", n)
    ours_gc = med["netsight grad_cam"]
    print(
        f"  ratios: captum/netsight {med['captum LayerGradCam + interpolate'] / ours_gc:.2f}x, "
        f"pytorch-grad-cam/netsight {med['pytorch-grad-cam GradCAM'] / ours_gc:.2f}x"
    )
    if args.profile:
        profile(
            {
                "netsight grad_cam": lambda: ns.explain(model, x, target, method="grad_cam", layer="layer4"),
                "captum LayerGradCam + interpolate": captum_gc,
            },
            device,
        )


_WAITS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize", "cudaMemGetInfo")


def profile(contenders: dict[str, Callable[[], object]], device: torch.device, calls: int = 5) -> None:
    """Per contender, over ``calls`` calls: host and device time, the host's waits for the device, and
    the five operators with the most device (or, on the CPU, host) self time."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    print(f"\nprofile ({calls} calls each, {device})")
    for name, fn in contenders.items():
        fn()
        sync(device)
        t0 = time.perf_counter()
        with torch_profile(activities=activities) as prof:
            for _ in range(calls):
                fn()
            sync(device)
        wall = (time.perf_counter() - t0) / calls
        events = prof.key_averages()
        dev_attr = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
        dev_us = sum(getattr(e, dev_attr, 0.0) for e in events) / calls
        waits = {e.key: e.count // calls for e in events if e.key in _WAITS or "Memcpy DtoH" in e.key}
        top = sorted(events, key=lambda e: getattr(e, dev_attr, 0.0), reverse=True)[:5]
        print(f"  {name}: wall {wall * 1e3:.2f} ms/call (profiled), self time {dev_us / 1e3:.2f} ms/call")
        print(f"    waits per call: {waits or 'none'}")
        for e in top:
            ms = getattr(e, dev_attr, 0.0) / calls / 1e3
            print(f"    {e.key[:60]:<60} {ms:8.3f} ms  x{e.count // calls}")


def saliency_race(
    model: nn.Module, x: torch.Tensor, target: torch.Tensor, args: argparse.Namespace, device: torch.device
) -> None:
    from captum.attr import Saliency

    n = x.shape[0]
    sal = Saliency(model)
    xs = x.clone().requires_grad_(True)
    med = race(
        {
            "netsight saliency": lambda: ns.explain(model, x, target, method="saliency"),
            "captum Saliency": lambda: sal.attribute(xs, target=target, abs=True),
        },
        args.repeats,
        device,
    )
    report("Saliency |dy/dx|", med, "netsight saliency", n)
    print(f"  ratio: captum/netsight {med['captum Saliency'] / med['netsight saliency']:.2f}x")


def ig_race(model: nn.Module, target: torch.Tensor, args: argparse.Namespace, device: torch.device) -> None:
    from captum.attr import IntegratedGradients

    n = target.shape[0]
    ig_b = args.ig_batch or n
    ig_size = args.ig_size or (112 if device.type == "cpu" else args.size)
    xi = torch.randn(ig_b, 3, ig_size, ig_size, device=device, generator=None)
    ti = target[:ig_b] if ig_b <= n else torch.randint(1000, (ig_b,), device=device)
    ig = IntegratedGradients(model)
    # Captum runs all 50 steps of every sample in one forward unless told otherwise: on a GPU at batch
    # 64 that is 3,200 images and runs out of memory, so it gets an internal batch size (netsight sizes
    # its chunks to free memory by itself).
    cap_kw = {"internal_batch_size": args.captum_internal_batch} if args.captum_internal_batch else {}
    if device.type == "cuda" and not cap_kw:
        cap_kw = {"internal_batch_size": 512}
    a_captum, d = ig.attribute(xi, target=ti, n_steps=50, return_convergence_delta=True, **cap_kw)
    e_captum = d.abs()
    tol = float(e_captum.mean())
    ours_ad = ns.explain(model, xi, ti, method="integrated_gradients", tolerance=tol)
    ours_50 = ns.explain(model, xi, ti, method="integrated_gradients", steps=50)
    gl16 = ns.explain(model, xi, ti, method="integrated_gradients", steps=16)
    rr50 = ns.explain(model, xi, ti, method="integrated_gradients", steps=50, rule="riemann_right")
    e_ad = ours_ad.meta["completeness_error"]
    # the adaptive map's completeness error once more, from plain forwards (not from netsight's meta)
    with torch.no_grad():
        rows = torch.arange(ig_b, device=device)
        f_delta = model(xi)[rows, ti] - model(torch.zeros_like(xi))[rows, ti]
    e_ad_check = (ours_ad.attributions.flatten(1).sum(1) - f_delta).abs()
    print(
        f"\nIntegrated gradients: batch {ig_b}, {ig_size} px, zero baseline; completeness error "
        f"|sum attr - (F(x) - F(0))| per sample: mean (median | max):"
    )
    for label, e in [
        ("captum default (50 Gauss-Legendre)", e_captum),
        ("netsight 50 Gauss-Legendre", ours_50.meta["completeness_error"]),
        (f"netsight adaptive (tolerance {tol:.3g})", e_ad),
        ("  the same, from plain forwards", e_ad_check),
        ("netsight 16 Gauss-Legendre", gl16.meta["completeness_error"]),
        ("netsight 50 Riemann (right)", rr50.meta["completeness_error"]),
    ]:
        print(f"  {label:<44} {e.mean():.4g}  ({e.median():.4g} | {e.max():.4g})")
    steps = ours_ad.meta["steps"]
    print(
        f"  adaptive: gradient evaluations per sample {steps.tolist()} (mean {steps.float().mean():.1f}, "
        f"Captum 50); mean error <= Captum's: {bool(e_ad_check.mean() <= e_captum.mean())}, "
        f"max error <= Captum's: {bool(e_ad_check.max() <= e_captum.max())}"
    )
    if args.ig_reference:
        ref = ig.attribute(xi, target=ti, n_steps=args.ig_reference, internal_batch_size=256)
        print(f"  relative L2 distance of the map to Captum's {args.ig_reference}-step integral, mean (max):")
        for label, a in [
            ("captum default (50 Gauss-Legendre)", a_captum),
            ("netsight adaptive", ours_ad.attributions),
            ("netsight 16 Gauss-Legendre", gl16.attributions),
        ]:
            dist = (a - ref).flatten(1).norm(dim=1) / ref.flatten(1).norm(dim=1)
            print(f"    {label:<42} {dist.mean():.4f} ({dist.max():.4f})")
    contenders = {
        "netsight integrated_gradients adaptive": lambda: ns.explain(
            model, xi, ti, method="integrated_gradients", tolerance=tol
        ),
        "captum IntegratedGradients (50, with delta)": lambda: ig.attribute(
            xi, target=ti, n_steps=50, return_convergence_delta=True, **cap_kw
        ),
    }
    # Captum's default pushes all 50 x batch points through one forward; on a CPU such a batch runs
    # slower per image than moderate chunks, so Captum also races with a moderate internal batch: the
    # ratio against it is what fewer gradient evaluations alone buy.
    tuned = f"captum IntegratedGradients (50, internal_batch_size={args.captum_tuned_batch})"
    if args.captum_tuned_batch and not cap_kw:
        contenders[tuned] = lambda: ig.attribute(
            xi,
            target=ti,
            n_steps=50,
            return_convergence_delta=True,
            internal_batch_size=args.captum_tuned_batch,
        )
    if not args.ig_no_fixed:
        contenders["netsight integrated_gradients 50 steps"] = lambda: ns.explain(
            model, xi, ti, method="integrated_gradients", steps=50
        )
    med = race(contenders, args.ig_repeats, device)
    report("Integrated gradients", med, "netsight integrated_gradients adaptive", ig_b)
    c = med["captum IntegratedGradients (50, with delta)"]
    ours = med["netsight integrated_gradients adaptive"]
    line = f"  ratios: captum/netsight adaptive {c / ours:.2f}x"
    if tuned in med:
        line += f", captum (internal batch)/netsight adaptive {med[tuned] / ours:.2f}x"
    if not args.ig_no_fixed:
        line += f", captum/netsight 50 steps {c / med['netsight integrated_gradients 50 steps']:.2f}x"
    print(line)


if __name__ == "__main__":
    main()
