"""GPU correctness: the same answers on CUDA as the independent computations on the CPU.

Skipped where no CUDA device exists (CI); run on a GPU machine with ``pytest tests/gpu``.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import netsight as ns
from netsight.capture import reducers

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_stats_on_cuda_match_float64_on_cpu() -> None:
    for x in (torch.randn(3, 1000, 77) * 2 + 5, torch.relu(torch.randn(64, 256, 14, 14)), torch.randn(10)):
        got = reducers.stats_dict(reducers.stats(x.cuda()))
        a = x.double()
        want = {
            "mean": a.mean().item(),
            "std": a.std().item(),
            "min": a.min().item(),
            "max": a.max().item(),
            "abs_mean": a.abs().mean().item(),
            "l2": a.norm().item(),
            "zero_frac": (a == 0).double().mean().item(),
        }
        for k, w in want.items():
            assert math.isclose(got[k], w, rel_tol=1e-5, abs_tol=1e-6), (k, got[k], w)
    y = torch.randn(100, device="cuda")
    y[3] = float("nan")
    y[5] = float("inf")
    v = reducers.stats_dict(reducers.stats(y))
    assert v["nan_count"] == 1
    assert v["inf_count"] == 1


def test_resnet18_capture_on_cuda_matches_explicit_forward() -> None:
    torchvision = pytest.importorskip("torchvision")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
    from test_capture_exact import _resnet_explicit

    m = torchvision.models.resnet18(num_classes=10).cuda().eval()
    x = torch.randn(4, 3, 64, 64, device="cuda")
    out, acts = _resnet_explicit(m, x)
    flat = [(n, i, t) for n, ts in acts.items() for i, t in enumerate(ts)]
    grads = torch.autograd.grad(out[:, 1].sum(), [t for _, _, t in flat], allow_unused=True)
    with ns.capture(m, grads=True, reduce="stats", keep_full=True) as cap:
        m(x)[:, 1].sum().backward()
    for (name, i, t), g in zip(flat, grads):
        rec = cap[name].calls[i]
        assert (rec.activation - t).abs().max().item() <= 1e-5
        if g is not None:
            assert (rec.grad - g).abs().max().item() <= 1e-5
        torch.testing.assert_close(
            rec.reduced["stats"].cpu(), reducers.stats(t.detach().cpu()), rtol=1e-4, atol=1e-5
        )
    assert ns.hooks_on(m) == {}


def test_grad_cam_on_cuda_equals_cpu() -> None:
    torchvision = pytest.importorskip("torchvision")
    m = torchvision.models.resnet18(num_classes=10).eval()
    x = torch.randn(2, 3, 96, 96)
    cpu = ns.explain(m, x, target=3, method="grad_cam").attributions
    # cuDNN convolutions use TF32 by default (about 1e-3 relative); compare in full fp32
    tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        gpu = ns.explain(m.cuda(), x.cuda(), target=3, method="grad_cam").attributions
    finally:
        torch.backends.cudnn.allow_tf32 = tf32
    assert gpu.device.type == "cuda"
    assert (gpu.cpu() - cpu).abs().max().item() <= 1e-4


def test_watch_on_cuda_logs_every_layer(tmp_path) -> None:  # type: ignore[no-untyped-def]
    m = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3)).cuda()
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    with ns.open_run(tmp_path, name="gpu") as run, ns.watch(m, optimizer=opt, run=run):
        for step in range(5):
            loss = torch.nn.functional.cross_entropy(
                m(torch.randn(32, 8, device="cuda")), torch.randint(0, 3, (32,), device="cuda")
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
            run.log({"loss": loss}, step=step)
    r = ns.store.open(tmp_path).run("gpu")
    names, steps, values = r.layer_matrix("grad_norm")
    assert {"0", "2"} <= set(names)
    assert len(steps) == 5
    assert (values[np.isfinite(values)] > 0).all()
