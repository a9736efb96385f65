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


def test_targets_known_on_the_host_resolve_on_cuda_as_on_cpu() -> None:
    from netsight.errors import TargetError

    torch.manual_seed(0)
    m = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 5)
    )
    x = torch.randn(3, 3, 8, 8)
    for target in (None, 2, [4, 0, 1], torch.tensor([1, 1, 3]), torch.tensor([1, 1, 3], device="cuda")):
        cpu = ns.explain(m, x, target=target if not isinstance(target, torch.Tensor) else target.cpu())
        gpu = ns.explain(m.cuda(), x.cuda(), target=target)
        m.cpu()
        assert torch.equal(gpu.target.cpu(), cpu.target)
        torch.testing.assert_close(gpu.attributions.cpu(), cpu.attributions, atol=1e-5, rtol=1e-4)
    with pytest.raises(TargetError, match="class 7 is out of range"):
        ns.explain(m.cuda(), x.cuda(), target=[1, 7, 0])


def test_grad_cam_and_saliency_on_cuda_never_wait_for_the_device() -> None:
    """With targets known on the host (an int, a list, None) an explanation queues its forward, backward
    and upsampling without one synchronising call: PyTorch's sync debug mode raises on the first (a
    host read of a device value, a blocking copy). Against Captum on a GPU every such wait costs the
    time the host needs to queue what follows."""
    import torchvision

    torch.manual_seed(0)
    m = torchvision.models.resnet18(num_classes=10).cuda().eval()
    x = torch.randn(4, 3, 64, 64, device="cuda")
    for method in ("grad_cam", "saliency"):
        ns.explain(m, x, target=3, method=method)  # the first call probes the model (once per shape)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for method in ("grad_cam", "saliency"):
            for target in (3, [1, 2, 3, 4], None):
                ns.explain(m, x, target=target, method=method)
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_watch_on_cuda_matches_cpu_and_names_the_nan_origin() -> None:
    class LogNegative(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(6, 6)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.log(self.fc(x) - 100.0)

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 2))
    xs = [torch.randn(16, 4) for _ in range(10)]  # the last step, 9, collects everything (stats=3)
    rows = {}
    for device in ("cpu", "cuda"):
        m = torch.nn.Sequential(*[torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 2)]).to(device)
        m.load_state_dict(net.state_dict())
        opt = torch.optim.SGD(m.parameters(), lr=0.05)
        with ns.watch(m, optimizer=opt, stats=3) as mon:
            for x in xs:
                opt.zero_grad()
                m(x.to(device)).square().mean().backward()
                opt.step()
            last = mon.last
        assert last is not None
        rows[device] = last.values
    np.testing.assert_allclose(rows["cuda"], rows["cpu"], rtol=1e-4, atol=1e-7)

    bad = torch.nn.Sequential(torch.nn.Linear(4, 6), LogNegative(), torch.nn.Linear(6, 1)).cuda()
    opt = torch.optim.SGD(bad.parameters(), lr=0.0)
    with ns.watch(bad, optimizer=opt, stats=1000, heavy="never") as mon:
        for _ in range(2):
            opt.zero_grad()
            bad(torch.randn(4, 4, device="cuda")).sum().backward()
            opt.step()
    nan = [a for a in mon.alerts if a.rule == "nan"]
    assert nan
    assert nan[0].layer == "1"
    assert nan[0].step == 0
