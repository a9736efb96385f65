"""The diagnosis rules on models where the problem is known, and how alerts are delivered."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import netsight as ns
from netsight.errors import AlertError, ArgumentError, UnknownNameError
from netsight.monitor.detectors import StepView, Vanishing
from netsight.monitor.schedule import LogSchedule


def rules(mon: ns.Monitor) -> list[tuple[str, str | None, int]]:
    return [(a.rule, a.layer, a.step) for a in mon.alerts]


def test_deep_sigmoid_mlp_vanishing_names_the_early_layers(untouched: type) -> None:
    layers: list[nn.Module] = []
    for _ in range(20):
        layers += [nn.Linear(32, 32), nn.Sigmoid()]
    net = nn.Sequential(*layers, nn.Linear(32, 4))
    u = untouched(net)
    opt = torch.optim.SGD(net.parameters(), lr=0.0)  # lr 0 keeps the weights: the hygiene check holds
    with ns.watch(net, optimizer=opt) as mon:
        for _ in range(4):
            F.cross_entropy(net(torch.randn(16, 32)), torch.randint(0, 4, (16,))).backward()
            opt.step()
            opt.zero_grad()
    u.check()
    vanishing = [layer for rule, layer, _ in rules(mon) if rule == "vanishing"]
    assert "0" in vanishing  # the first two Linear layers
    assert "2" in vanishing
    linear = [n for n, m in net.named_modules() if isinstance(m, nn.Linear)]
    assert all(linear.index(n) < len(linear) // 2 for n in vanishing), vanishing  # only early ones
    assert {r for r, _, _ in rules(mon)} == {"vanishing"}


def regression_mlp() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(10, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1))
    x = torch.randn(256, 10)
    return net, x, x.sum(1, keepdim=True) * 3


def test_large_learning_rate_is_exploding_before_it_is_nan() -> None:
    net, x, y = regression_mlp()
    opt = torch.optim.SGD(net.parameters(), lr=0.2)
    with ns.watch(net, optimizer=opt) as mon:
        for _ in range(8):
            i = torch.randint(0, 256, (32,))
            F.mse_loss(net(x[i]), y[i]).backward()
            opt.step()
            opt.zero_grad()
    found = rules(mon)
    exploding = [s for r, _, s in found if r == "exploding"]
    nan = [s for r, _, s in found if r == "nan"]
    assert exploding
    assert nan
    assert min(exploding) < min(nan)
    # the same model with a sane learning rate: silent
    net, x, y = regression_mlp()
    opt = torch.optim.SGD(net.parameters(), lr=0.002)
    with ns.watch(net, optimizer=opt) as mon:
        for _ in range(8):
            i = torch.randint(0, 256, (32,))
            F.mse_loss(net(x[i]), y[i]).backward()
            opt.step()
            opt.zero_grad()
    assert mon.alerts == []


def test_bias_minus_ten_kills_the_units_of_that_layer() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Linear(8, 32),
        nn.ReLU(),
        nn.Linear(32, 32),
        nn.ReLU(),
        nn.Linear(32, 32),
        nn.ReLU(),
        nn.Linear(32, 2),
    )
    with torch.no_grad():
        net[2].bias.fill_(-10.0)
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    with ns.watch(net, optimizer=opt, dead_window=5) as mon:
        for _ in range(10):
            F.cross_entropy(net(torch.randn(16, 8)), torch.randint(0, 2, (16,))).backward()
            opt.step()
            opt.zero_grad()
    dead = {a.layer: (a.step, a.value) for a in mon.alerts if a.rule == "dead_units"}
    # the ReLU after the layer with bias -10, all its units, at the end of the first window
    assert dead["3"] == (4, 1.0)
    # upstream is healthy; downstream, layer 4 sees only zeros, so its ReLU passes relu(bias) and may
    # legitimately lose the units whose bias is negative
    assert "1" not in dead
    assert set(dead) <= {"3", "5"}


class Shift(nn.Module):
    """``log`` of its input plus a shift; the shift turns negative at a chosen step."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("shift", torch.tensor(5.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log(x.abs() + self.shift)


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 6)
        self.logit = Shift()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.logit(self.fc(x)))


@pytest.mark.parametrize("how", ["hooks", "replay"])
def test_log_of_a_negative_value_names_the_submodule_and_the_step(
    caplog: pytest.LogCaptureFixture, how: str, untouched: type
) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.BatchNorm1d(4), nn.Linear(4, 6), nn.Tanh(), Block(), nn.Linear(6, 2))
    # "hooks": activation statistics every step name the origin as the forward runs; "replay": steps
    # that collect gradient norms only see the NaN gradient, replay the batch and name the origin there
    opts = {"stats": 1} if how == "hooks" else {"stats": 1000, "heavy": "never"}
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    u = untouched(net)
    with caplog.at_level(logging.WARNING, logger="netsight"), ns.watch(net, optimizer=opt, **opts) as mon:
        for step in range(6):
            if step == 3:
                net[3].logit.shift.fill_(-100.0)  # log of a negative number from now on
            F.cross_entropy(net(torch.randn(8, 4)), torch.randint(0, 2, (8,))).backward()
            opt.step()
            opt.zero_grad()
    nan = [(layer, step) for rule, layer, step in rules(mon) if rule == "nan"]
    assert nan == [("3.logit", 3)]
    assert any("3.logit" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    assert ns.hooks_on(net) == {}
    assert u.state.differences(net) == []
    assert int(net[0].num_batches_tracked) == 6  # a replay leaves the batch-norm buffers as they were


def test_nan_made_by_a_containers_own_code_names_the_container() -> None:
    class LogAfter(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.log(self.fc(x) - 1000.0)

    net = nn.Sequential(nn.Linear(3, 3), LogAfter(), nn.Linear(3, 1))
    with ns.watch(net) as mon:
        net(torch.randn(2, 3)).sum().backward()
        mon.step()
    assert rules(mon) == [("nan", "1", 0)]


@pytest.mark.parametrize("stats", [1, 1000])  # the activation hooks on, or the replay after the fact
def test_nan_written_in_place_by_a_container_names_the_container(stats: int) -> None:
    # the container returns its child's output tensor after an in-place log: the tensor object is the
    # one the child's statistics already saw, but its values changed, so it must be checked again
    class LogInPlace(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.fc(x)
            return y.sub_(1000.0).log_()

    net = nn.Sequential(nn.Linear(3, 3), LogInPlace(), nn.Linear(3, 1))
    with ns.watch(net, stats=stats, heavy="never") as mon:
        for _ in range(2):
            net(torch.randn(2, 3)).sum().backward()
            mon.step()
    assert rules(mon)[0] == ("nan", "1", 0)


def test_raise_on_raises_after_writing_and_the_model_is_clean(untouched: type) -> None:
    net, x, y = regression_mlp()
    u = untouched(net)
    opt = torch.optim.SGD(net.parameters(), lr=0.0)
    params = [p.detach().clone() for p in net.parameters()]
    mon = ns.watch(net, optimizer=opt, raise_on=["nan"])
    try:
        F.mse_loss(net(x[:4]), y[:4]).backward()
        opt.step()
        net(x[:4]).sum().backward()
        net[0].weight.grad[0, 0] = float("nan")
        with pytest.raises(AlertError, match="raise_on: rule 'nan' fired") as info:
            opt.step()
        assert info.value.alert.rule == "nan"
        assert info.value.alert.layer == "0"
    finally:
        mon.close()
    with torch.no_grad():  # the NaN gradient reached the weight through lr * nan; put it back
        for p, old in zip(net.parameters(), params):
            p.copy_(old)
    u.check()


def test_ring_buffer_writes_the_steps_before_an_alert(tmp_path: object) -> None:
    net, x, y = regression_mlp()
    opt = torch.optim.SGD(net.parameters(), lr=0.0)
    with ns.open_run(tmp_path, name="ring") as run, ns.watch(net, optimizer=opt, run=run, every=10, ring=4):
        for step in range(17):
            if step == 16:
                with torch.no_grad():
                    net[4].bias.fill_(float("nan"))
            F.mse_loss(net(x[:8]), y[:8]).backward()
            opt.step()
            opt.zero_grad()
    r = ns.store.open(tmp_path).run("ring")
    names, steps, values = r.layer_matrix("grad_norm", layers=["0", "2", "4"])
    assert names == ["0", "2", "4"]
    assert list(steps) == [0, 10, 12, 13, 14, 15, 16]  # every 10th, then the ring's 4 steps and the alert
    assert np.isfinite(values[:, :-1]).all()
    assert np.isnan(values[:, -1]).all()
    assert [(a.rule, a.layer, a.step) for a in r.alerts()] == [("nan", "4", 16)]


def test_arguments_are_checked() -> None:
    net = nn.Linear(2, 2)
    with pytest.raises(UnknownNameError, match="Did you mean 'vanishing'"):
        ns.watch(net, raise_on=["vanishng"])
    with pytest.raises(UnknownNameError, match="detectors: unknown rule"):
        ns.watch(net, detectors={"explode": False})
    with pytest.raises(ArgumentError, match="every: expected a positive int"):
        ns.watch(net, every=0)
    with pytest.raises(ArgumentError, match=r"optimizer: expected a torch\.optim\.Optimizer"):
        ns.watch(net, optimizer="sgd")  # type: ignore[arg-type]
    with pytest.raises(ArgumentError, match="ratio: expected a positive number"):
        ns.watch(net, detectors={"vanishing": {"ratio": -1}})
    assert ns.hooks_on(net) == {}


def test_vanishing_by_a_fall_over_the_window() -> None:
    rule = Vanishing(window=20, patience=2)
    layers = ["a", "b"]
    fired = []
    for step in range(30):
        g = np.array([1.0, 1.0 if step < 20 else 1e-3])
        view = StepView(step, layers, ("grad_norm",), g[:, None], numel=np.array([4.0, 4.0]))
        fired += [(f.layer, step) for f in rule(view)]
    # b is also 1e3 below the median of two layers (relative rule); either way it fires once, at 21
    assert fired == [("b", 21)]


def test_log_schedule_is_dense_early_and_sparse_later() -> None:
    sched = LogSchedule()
    steps = [s for s in range(100_001) if sched(s)]
    assert steps[:10] == list(range(10))
    assert len([s for s in steps if 1000 <= s < 10_000]) == 10
    assert len(steps) < 70
    assert 100_000 in steps


def test_serve_starts_the_dashboard_on_the_runs_store(tmp_path: object) -> None:
    httpx = pytest.importorskip("httpx")
    pytest.importorskip("fastapi")
    net = nn.Linear(2, 2)
    with pytest.raises(ArgumentError, match="serve: True needs a run"):
        ns.watch(net, serve=True)
    assert ns.hooks_on(net) == {}
    with ns.open_run(tmp_path, name="served") as run, ns.watch(net, run=run, serve={"port": 0}) as mon:
        try:
            net(torch.randn(3, 2)).sum().backward()
            mon.step()
            run.flush()
            reply = httpx.get(mon.server.url.rstrip("/") + "/api/runs", timeout=10)
            assert reply.status_code == 200
            assert "served" in reply.text
        finally:
            mon.server.stop()


def test_window_medians_match_numpy_with_gaps() -> None:
    from netsight.monitor.detectors import _median_rows

    rng = np.random.default_rng(1)
    for _ in range(100):
        a = rng.random((int(rng.integers(1, 12)), 7))
        a[rng.random(a.shape) < 0.3] = np.nan
        a[:, 0] = np.nan  # a layer without parameters: never a gradient norm
        a[rng.random(a.shape) < 0.05] = np.inf
        want = [np.median(c[np.isfinite(c)]) if np.isfinite(c).any() else np.nan for c in a.T]
        np.testing.assert_allclose(_median_rows(a), want)


def test_rules_fire_once_per_episode_with_patience_on_both_edges() -> None:
    from netsight.monitor.detectors import _Latch

    latch = _Latch(3)
    keys = ["a", "b"]
    seq_a = [1, 1, 1, 1, 0, 0, 1, 1, 0, 0, 0, 1, 1, 1]  # fires at 2; re-arms after 3 clear; fires at 13
    fired = []
    for t, c in enumerate(seq_a):
        hits = latch.update_many(keys, np.array([True, False]), np.array([bool(c), True]))
        fired += [(t, keys[i]) for i in hits]
    assert fired == [(2, "a"), (13, "a")]  # "b" never applies, so it never fires


def test_host_work_waits_in_batches_and_reading_drains_it() -> None:
    net = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    with ns.watch(net, optimizer=opt, stats=1000, heavy="never") as mon:
        for _ in range(3):
            opt.zero_grad()
            F.cross_entropy(net(torch.randn(8, 4)), torch.zeros(8, dtype=torch.long)).backward()
            g = net[2].weight.grad
            b = net[2].bias.grad
            assert g is not None
            assert b is not None
            want = math.sqrt(float(g.double().square().sum() + b.double().square().sum()))
            opt.step()
        assert len(mon._pending) == 2  # step 0 collects everything (processed at once); 1 and 2 wait
        last = mon.last  # reading drains
        assert len(mon._pending) == 0
        assert last is not None
        assert last.step == 2
        got = last.values[mon.layers.index("2"), 0]
        assert abs(got - want) <= 1e-5 * want


@pytest.mark.parametrize("rule", ["vanishing", "exploding"])
def test_rules_over_a_batch_of_steps_find_what_step_by_step_calls_find(rule: str) -> None:
    from netsight.monitor.detectors import RULES
    from netsight.monitor.detectors import StepView as View

    rng = np.random.default_rng(7)
    n_layers, steps = 9, 400
    layers = [f"l{i}" for i in range(n_layers)]
    numel = np.array([0.0, 40, 40, 0, 90, 90, 10, 0, 300])  # layers 0, 3, 7 own no parameters
    g = np.exp(rng.normal(0, 0.3, (steps, n_layers)))
    g[:, numel == 0] = np.nan
    g[120:, 2] *= 1e-3  # a fall
    g[200:203, 4] *= 50  # a jump
    g[250:320, 5] *= np.exp(np.linspace(0, 8, 70))  # sustained growth
    g[300:306, 6] = np.nan  # gaps (a layer without a gradient for a while)
    g[330, 8] = np.inf
    g[:, 1] = np.where(rng.random(steps) < 0.1, 1e-6, g[:, 1])  # flickering far below the rest

    def view(t: int) -> View:
        values = np.full((n_layers, 2), np.nan)
        values[:, 0] = g[t]
        return View(step=t, layers=layers, metrics=("grad_norm", "x"), values=values, numel=numel)

    one, batched = RULES[rule](), RULES[rule]()
    want = [[(f.layer, f.message) for f in one(view(t))] for t in range(steps)]
    got: list[list[tuple[str | None, str]]] = []
    t = 0
    while t < steps:
        k = int(rng.integers(1, 12))
        views = [view(u) for u in range(t, min(t + k, steps))]
        got += [[(f.layer, f.message) for f in found] for found in batched.many(views)]
        t += k
    assert got == want
    assert sum(map(len, want)) >= 3  # the scenario does fire the rule
