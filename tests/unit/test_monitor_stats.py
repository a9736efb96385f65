"""Every statistic the monitor collects, recomputed independently in float64 (relative error <= 1e-5)."""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import netsight as ns
from netsight.capture.reducers import log_edges
from netsight.monitor import METRICS


class Net(nn.Module):
    """conv-bn-relu(in-place) -> conv -> the same relu again -> linear -> tanh -> linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(4, 4, 3, bias=False)
        self.fc = nn.Linear(4 * 4 * 4, 6)
        self.tanh = nn.Tanh()
        self.out = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.relu(self.bn(self.conv1(x)))
        h = self.relu(self.conv2(h))
        return self.out(self.tanh(self.fc(h.flatten(1)) * 3.0))


def oracle_forward(net: Net, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, list[torch.Tensor]]]:
    """The same forward, written out, with every module output retained (no hooks, no in-place)."""
    outs: dict[str, list[torch.Tensor]] = {}

    def keep(name: str, t: torch.Tensor) -> torch.Tensor:
        t.retain_grad()
        outs.setdefault(name, []).append(t)
        return t

    h = keep("conv1", net.conv1(x))
    h = keep("bn", net.bn(h))
    h = keep("relu", F.relu(h))
    h = keep("conv2", net.conv2(h))
    h = keep("relu", F.relu(h))
    h = keep("fc", net.fc(h.flatten(1)))
    h = keep("tanh", torch.tanh(h * 3.0))
    return keep("out", net.out(h)), outs


def close(a: float, b: float, rel: float = 1e-5, abs_: float = 1e-7) -> bool:
    return math.isclose(a, b, rel_tol=rel, abs_tol=abs_)


def test_every_statistic_matches_an_independent_computation(untouched: type) -> None:
    torch.manual_seed(1)
    net = Net().train()
    ref = copy.deepcopy(net)
    u = untouched(net)  # snapshot before: no hooks, same flags afterwards (parameters do change)
    x = torch.randn(5, 1, 8, 8)
    y = torch.randint(0, 3, (5,))
    opt = torch.optim.SGD(net.parameters(), lr=0.3, momentum=0.9)
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.3, momentum=0.9)
    edges = log_edges(1e-6, 1e2, per_decade=3)
    with ns.watch(net, optimizer=opt, heavy="always", hist_edges=edges, hist_sample=None) as mon:
        for _ in range(2):  # second step: momentum makes the update differ from lr * grad
            F.cross_entropy(net(x), y).backward()
            opt.step()
            opt.zero_grad()
            # the oracle, on an identical copy
            logits, outs = oracle_forward(ref, x)
            F.cross_entropy(logits, y).backward()
            before = {n: p.detach().double().clone() for n, p in ref.named_parameters()}
            grads = {n: p.grad.detach().double().clone() for n, p in ref.named_parameters()}
            ref_opt.step()
            ref_opt.zero_grad()
            after = {n: p.detach().double() for n, p in ref.named_parameters()}
        last = mon.last
    assert ns.hooks_on(net) == {}
    assert u.state.differences(net) == []
    col = {m: i for i, m in enumerate(METRICS)}
    row = {n: i for i, n in enumerate(mon.layers)}
    for layer in ("conv1", "bn", "conv2", "fc", "out"):
        names = [n for n in grads if n.startswith(layer + ".")]
        g = torch.cat([grads[n].reshape(-1) for n in names])
        w = torch.cat([before[n].reshape(-1) for n in names])
        d = torch.cat([(after[n] - before[n]).reshape(-1) for n in names])
        v = last.values[row[layer]]
        assert close(v[col["grad_norm"]], g.norm().item()), layer
        assert close(v[col["grad_abs_mean"]], g.abs().mean().item()), layer
        assert close(v[col["grad_abs_max"]], g.abs().max().item()), layer
        assert close(v[col["weight_norm"]], w.norm().item()), layer
        assert close(v[col["update_ratio"]], (d.norm() / w.norm()).item(), rel=1e-4), layer
    for layer in ("conv1", "bn", "relu", "conv2", "fc", "tanh", "out"):
        a = torch.cat([t.detach().double().reshape(-1) for t in outs[layer]])
        delta = torch.cat([t.grad.double().reshape(-1) for t in outs[layer]])
        v = last.values[row[layer]]
        assert close(v[col["act_mean"]], a.mean().item()), layer
        assert close(v[col["act_std"]], a.std().item()), layer
        if layer in ("relu", "tanh"):  # zeros are counted for modules without parameters
            assert close(v[col["act_zero_frac"]], (a == 0).double().mean().item()), layer
        else:
            assert np.isnan(v[col["act_zero_frac"]]), layer
        assert close(v[col["delta_norm"]], delta.norm().item()), layer
        if layer == "tanh":
            sat = ((a <= -1 + 0.02) | (a >= 1 - 0.02)).double().mean().item()
            assert sat > 0.05  # the test means something: the * 3.0 pushes tanh into saturation
            assert close(v[col["act_sat_frac"]], sat), layer
        else:
            assert np.isnan(v[col["act_sat_frac"]]), layer
    # histograms: every element of every tensor in the bins torch.bucketize(right=True) defines
    e = edges.numpy()
    hist = last.hists
    for kind, source in (("weight", before), ("grad", grads)):
        layers, counts = hist[kind]
        for i, layer in enumerate(layers):
            vals = torch.cat([source[n].reshape(-1) for n in source if n.startswith(layer + ".")]).numpy()
            want = np.bincount(np.searchsorted(e, vals, side="right"), minlength=len(e) + 1)
            np.testing.assert_array_equal(counts[i], want)
    layers, counts = hist["activation"]
    for i, layer in enumerate(layers):
        if layer in outs:
            vals = torch.cat([t.detach().reshape(-1) for t in outs[layer]]).float().numpy()
            want = np.bincount(
                np.searchsorted(e.astype(np.float32), vals, side="right"), minlength=len(e) + 1
            )
            np.testing.assert_allclose(counts[i], want)


def test_without_optimizer_step_collects_and_update_is_between_calls() -> None:
    torch.manual_seed(2)
    net = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 2))
    x = torch.randn(6, 4)
    seen = []
    with ns.watch(net, heavy="never", stats=1) as mon:
        for _ in range(2):
            seen.append(torch.cat([p.detach().double().reshape(-1) for p in net[0].parameters()]))
            net(x).square().sum().backward()
            mon.step()
            with torch.no_grad():
                for p in net.parameters():
                    p.sub_(0.1 * p.grad)
                    p.grad = None
        v = mon.last.values[mon.layers.index("0")]
    # the second collection compares the weights with those at the first call
    assert close(v[METRICS.index("weight_norm")], seen[1].norm().item())
    want = ((seen[1] - seen[0]).norm() / seen[0].norm()).item()
    assert want > 0
    assert close(v[METRICS.index("update_ratio")], want, rel=1e-4)
    assert ns.hooks_on(net) == {}


def test_validation_under_no_grad_is_not_recorded() -> None:
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh())
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    x = torch.randn(4, 3)
    with torch.no_grad():
        want = net(x).double()
    with ns.watch(net, optimizer=opt) as mon:
        net(x).sum().backward()
        with torch.no_grad():
            net(torch.full((4, 3), 100.0))  # all saturated: would change the statistics if recorded
        opt.step()
        v = mon.last.values[mon.layers.index("1")]
    assert close(v[METRICS.index("act_mean")], want.mean().item())
    assert close(v[METRICS.index("act_sat_frac")], ((want.abs() >= 0.98).double().mean().item()))


def test_one_host_transfer_per_step_and_no_item(monkeypatch: pytest.MonkeyPatch) -> None:
    net = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 8), nn.Sigmoid(), nn.Linear(8, 2))
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    x = torch.randn(4, 3)
    with ns.watch(net, optimizer=opt, heavy="always") as mon:
        calls = {"cpu": 0}
        real_cpu = torch.Tensor.cpu

        def counting_cpu(self: torch.Tensor, *a: object, **k: object) -> torch.Tensor:
            calls["cpu"] += 1
            return real_cpu(self, *a, **k)

        def no_item(self: torch.Tensor) -> float:
            raise AssertionError(".item() called on the hot path")

        monkeypatch.setattr(torch.Tensor, "cpu", counting_cpu)
        monkeypatch.setattr(torch.Tensor, "item", no_item)
        for _ in range(3):
            net(x).sum().backward()
            opt.step()
            opt.zero_grad()
        monkeypatch.undo()
        assert calls["cpu"] == 3
        assert mon.step_count == 3


def test_mode_changes_made_during_training_are_kept_on_close() -> None:
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2)).train()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    x = torch.randn(6, 3)
    with ns.watch(net, optimizer=opt, stats=1):
        for step in range(3):
            if step == 1:  # the user freezes the first layer and the batch-norm statistics
                net[1].eval()
                net[0].weight.requires_grad_(False)
            net(x).sum().backward()
            opt.step()
            opt.zero_grad()
    assert ns.hooks_on(net) == {}
    assert net[1].training is False
    assert net[0].weight.requires_grad is False
    assert net[3].training is True


def test_gradient_statistics_of_large_tensors_match_float64() -> None:
    # above 2^20 elements the full steps sum |g| and g^2 through one reused buffer (pairwise float32
    # summation) and take max |g| from aminmax: every statistic within 1e-6 of float64 (_foreach_norm's
    # naive float32 accumulation is off by ~3e-5 on these 1.5M-element weights, ~3e-4 for ord=1)
    net = nn.Sequential(nn.Linear(1024, 1536), nn.Tanh(), nn.Linear(1536, 4))
    opt = torch.optim.SGD(net.parameters(), lr=0.0)
    with ns.watch(net, optimizer=opt, stats="always", heavy="never") as mon:
        net(torch.randn(16, 1024) * 3).pow(2).sum().backward()
        grads = {
            n: [p.grad.double() for p in m.parameters() if p.grad is not None]
            for n, m in net.named_children()
        }
        opt.step()
        last = mon.last
    assert last is not None
    for name in ("0", "2"):
        g = torch.cat([t.reshape(-1) for t in grads[name]])
        row = last.values[mon.layers.index(name)]
        want = {
            "grad_norm": float(g.norm()),
            "grad_abs_mean": float(g.abs().mean()),
            "grad_abs_max": float(g.abs().max()),
        }
        for metric, value in want.items():
            got = row[METRICS.index(metric)]
            tol = 1e-6
            assert abs(got - value) <= tol * value, (name, metric, got, value)


def test_sampled_activation_histograms_match_bucketize_of_the_same_samples() -> None:
    # outputs larger than hist_sample are histogrammed from an even stride; the counts are scaled by
    # numel / sampled. Recomputed here from the same strided elements with torch.bucketize.
    net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.Tanh())
    opt = torch.optim.SGD(net.parameters(), lr=0.0)
    x = torch.randn(4, 1, 16, 16)
    outs: dict[str, torch.Tensor] = {}
    handles = [
        m.register_forward_hook(lambda mod, inp, out, name=name: outs.__setitem__(name, out.detach().clone()))
        for name, m in net.named_children()
    ]
    edges = log_edges()
    try:
        with ns.watch(net, optimizer=opt, heavy="always", hist_sample=500) as mon:
            for _ in range(2):
                opt.zero_grad()
                net(x).sum().backward()
                opt.step()
            last = mon.last
    finally:
        for h in handles:
            h.remove()
    assert last is not None
    layers, counts = last.hists["activation"]
    for name in ("0", "2", "3"):  # conv outputs and tanh: 2048 elements each, sampled every 4th
        flat = outs[name].reshape(-1)
        sample = flat[:: flat.numel() // 500].contiguous()
        want = torch.bincount(
            torch.bucketize(sample, edges.float(), right=True), minlength=edges.numel() + 1
        ).double() * (flat.numel() / sample.numel())
        np.testing.assert_allclose(counts[layers.index(name)], want.numpy(), rtol=1e-12)


@pytest.mark.parametrize(
    "edges",
    [
        log_edges(),  # the monitor's default: signed, log-spaced
        torch.linspace(-3.0, 3.0, 61, dtype=torch.float64),  # uniform
        torch.tensor([0.0, 1.0, 1.0001], dtype=torch.float64),  # two edges in one lookup interval
    ],
    ids=["log", "linear", "tight"],
)
def test_bin_finder_equals_bucketize(edges: torch.Tensor) -> None:
    # the histograms' lookup table on float bits against torch.bucketize(right=True), on values spread
    # over 30 decades, every edge, its float neighbours on both sides, signed zeros, infinities and
    # subnormals
    from netsight.monitor._histograms import LogBins

    e32 = torch.as_tensor(edges, dtype=torch.float64).float()
    g = torch.Generator().manual_seed(0)
    spread = torch.randn(200_000, generator=g) * torch.exp(5 * torch.randn(200_000, generator=g))
    special = torch.tensor([0.0, -0.0, math.inf, -math.inf, 1e-45, -1e-45, 1e-38, -1e-38, 3e38, -3e38])
    up, down = torch.tensor(math.inf), torch.tensor(-math.inf)
    v = torch.cat([spread, special, e32, torch.nextafter(e32, up), torch.nextafter(e32, down)])
    bins = LogBins(torch.as_tensor(edges, dtype=torch.float64))
    assert torch.equal(bins.index(v), torch.bucketize(v, e32, right=True))
    strided = v[::7].reshape(-1, 1)  # a non-contiguous view
    assert torch.equal(bins.index(strided), torch.bucketize(strided.contiguous(), e32, right=True))


@pytest.mark.parametrize("shape", [(6, 3, 5, 5), (6, 7, 3)], ids=["conv-channels", "sequence-features"])
def test_dead_fraction_and_zero_fraction_of_a_relu_match_a_hand_count(shape: tuple[int, ...]) -> None:
    """Units (channels of [B, C, H, W], features of [B, T, F]) that never fired over the window are dead;
    some fire in only one step of the window, some only for one sample, and those are alive."""
    torch.manual_seed(3)
    conv = len(shape) == 4
    layer = nn.Conv2d(3, 8, 1) if conv else nn.Linear(3, 8)
    net = nn.Sequential(layer, nn.ReLU())
    with torch.no_grad():
        layer.bias[:3] = -1e3  # units 0-2: dead whatever the input
        layer.weight[3] = layer.weight[3].abs() + 0.5
        layer.bias[3] = -30.0  # unit 3: fires only on the one large positive input below
    xs = [torch.randn(shape), torch.randn(shape)]
    big = xs[1][:1].clone() * 0 + 40.0  # one sample of one step with large inputs: unit 3 fires there
    xs[1] = torch.cat([big, xs[1][1:]])
    opt = torch.optim.SGD(net.parameters(), lr=0.0)  # weights stay, so the oracle reruns the same forward
    with ns.watch(net, optimizer=opt, stats="always", heavy="never", dead_window=2) as mon:
        for x in xs:
            net(x).sum().backward()
            opt.step()
            opt.zero_grad()
            zero_frac = mon.last.values[mon.layers.index("1"), METRICS.index("act_zero_frac")]
            with torch.no_grad():
                out = torch.relu(layer(x))
            assert close(zero_frac, (out == 0).double().mean().item())
        dead = mon.last.values[mon.layers.index("1"), METRICS.index("dead_frac")]
    with torch.no_grad():
        outs = [torch.relu(layer(x)) for x in xs]
    dims = (0, 2, 3) if conv else (0, 1)
    fired = torch.stack([(o != 0).sum(dim=dims) > 0 for o in outs])  # [step, unit]
    alive = fired.any(dim=0)
    # the test means what it says: units 0-2 never fired, unit 3 fired in the second step only
    assert not alive[:3].any()
    assert alive[3]
    assert not fired[0, 3]
    assert close(dead, 1.0 - alive.double().mean().item())


@pytest.mark.parametrize("stats", ["always", 10**9], ids=["full-steps", "gradient-norm-only-steps"])
def test_norms_of_large_tensors_match_float64(stats: Any) -> None:
    # the every-step gradient norm, the weight norm and the update: above 2^20 elements a CPU norm is a
    # pairwise sum of squares (within 1e-6 of float64), not _foreach_norm's float32 accumulation (8.6e-5
    # off at 4M elements, like torch.linalg.vector_norm)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2048, 2048), nn.Identity(), nn.Linear(2048, 3))
    with torch.no_grad():
        net[0].weight.add_(0.02)  # same-signed weights and gradients: float32 accumulation drifts most
        net[2].weight.abs_()
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    with ns.watch(net, optimizer=opt, stats=stats, heavy="never") as mon:
        for _ in range(2):
            net(torch.rand(8, 2048) + 0.5).sum().backward()  # positive inputs and output weights
            grad = net[0].weight.grad.double().clone()
            grad = torch.cat([grad.reshape(-1), net[0].bias.grad.double()])
            before = torch.cat([p.detach().double().reshape(-1).clone() for p in net[0].parameters()])
            opt.step()
            after = torch.cat([p.detach().double().reshape(-1) for p in net[0].parameters()])
            opt.zero_grad()
        last = mon.last
    assert last is not None
    row = last.values[mon.layers.index("0")]
    want = {"grad_norm": float(grad.norm())}
    if stats == "always":
        want["weight_norm"] = float(before.norm())
        want["update_ratio"] = float((after - before).norm() / before.norm())
    for metric, value in want.items():
        got = row[METRICS.index(metric)]
        assert abs(got - value) <= 1e-6 * value, (metric, got, value, abs(got - value) / value)


def test_activation_statistics_and_delta_of_large_outputs_match_float64() -> None:
    # 1M-element ReLU outputs (same-signed, where float32 accumulation drifts most): the sums of squares
    # are pairwise sums on a CPU, not torch.dot (1.5e-4 off at 2^20 elements), so the standard deviation
    # and the error signal's norm stay within 1e-6 of float64
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(64 * 64 * 64, 2))
    x = torch.randn(4, 3, 64, 64)
    opt = torch.optim.SGD(net.parameters(), lr=0.0)
    with ns.watch(net, optimizer=opt, stats="always", heavy="never") as mon:
        net(x).square().sum().backward()
        opt.step()
        last = mon.last
    assert last is not None
    h = net[0](x)
    h.retain_grad()
    a = torch.relu(h)
    a.retain_grad()
    net[3](a.flatten(1)).square().sum().backward()
    col = {m: i for i, m in enumerate(METRICS)}
    for layer, out in (("0", h), ("1", a)):
        assert out.numel() >= 1 << 20
        row = last.values[mon.layers.index(layer)]
        d, g = out.detach().double(), out.grad.double()
        for metric, want in (("act_mean", d.mean()), ("act_std", d.std()), ("delta_norm", g.norm())):
            got = row[col[metric]]
            assert abs(got - float(want)) <= 1e-6 * abs(float(want)), (layer, metric, got, float(want))
