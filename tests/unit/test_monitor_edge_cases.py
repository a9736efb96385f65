"""The monitor and the run store in less common training setups: frozen and unused parameters, several
parameter groups, sparse and bfloat16 gradients, parameter-free models, a loop that raises, an
infinite gradient whose step is skipped, and scalars changed in place after they were logged."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import netsight as ns
from netsight.errors import AlertError, ArgumentError
from netsight.monitor import METRICS

GRAD = METRICS.index("grad_norm")


def grad_norm(module: nn.Module) -> float:
    """The layer's gradient norm in float64, from the parameters it owns that have a gradient (NaN: none)."""
    grads = [p.grad for p in module.parameters(recurse=False) if p.grad is not None and p.requires_grad]
    if not grads:
        return math.nan
    return math.sqrt(sum(float(g.double().square().sum()) for g in grads))


def no_hooks(model: nn.Module, *optimizers: torch.optim.Optimizer) -> None:
    assert ns.hooks_on(model) == {}
    for m in model.modules():
        assert not m._forward_hooks_with_kwargs
        assert not m._forward_pre_hooks_with_kwargs
    for opt in optimizers:
        assert not opt._optimizer_step_pre_hooks
        assert not opt._optimizer_step_post_hooks


class Branchy(nn.Module):
    """``b`` is skipped on odd steps (no gradient then); ``frozen`` has requires_grad False."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 4)
        self.frozen = nn.Linear(4, 4)
        self.out = nn.Linear(4, 2)
        self.frozen.requires_grad_(False)

    def forward(self, x: torch.Tensor, use_b: bool) -> torch.Tensor:
        h = torch.relu(self.a(x))
        if use_b:
            h = h + self.b(h)
        return self.out(self.frozen(h))


def test_param_groups_unused_branch_and_unfreezing_match_norms_by_hand(tmp_path: Path) -> None:
    net = Branchy()
    opt = torch.optim.SGD(
        [
            {"params": net.a.parameters(), "lr": 0.1},
            {"params": [*net.b.parameters(), *net.out.parameters()], "lr": 0.01, "momentum": 0.9},
        ]
    )
    want = []
    with ns.open_run(tmp_path, name="groups") as run, ns.watch(net, optimizer=opt, run=run) as mon:
        for step in range(12):
            F.mse_loss(net(torch.randn(8, 4), use_b=step % 2 == 0), torch.zeros(8, 2)).backward()
            want.append([grad_norm(getattr(net, n)) for n in ("a", "b", "frozen", "out")])
            opt.step()
            opt.zero_grad()
            if step == 5:
                net.frozen.requires_grad_(True)
                opt.add_param_group({"params": net.frozen.parameters(), "lr": 0.01})
        assert mon.alerts == []
    _names, steps, values = (
        ns.store.open(tmp_path).run("groups").layer_matrix("grad_norm", layers=["a", "b", "frozen", "out"])
    )
    assert list(steps) == list(range(12))
    expected = np.array(want).T
    assert np.isnan(expected[1, 1::2]).all()
    assert np.isnan(expected[2, :6]).all()
    np.testing.assert_allclose(values, expected, rtol=1e-5, equal_nan=True)
    no_hooks(net, opt)


@pytest.mark.parametrize("in_optimizer", [True, False])
def test_a_frozen_layers_leftover_grad_is_not_its_gradient(in_optimizer: bool) -> None:
    # zero_grad(set_to_none=False) leaves zeros in a frozen layer's .grad (then 'vanishing' fired on
    # it), and a frozen layer outside the optimizer keeps its last gradient forever
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    params = net.parameters() if in_optimizer else [*net[2].parameters(), *net[4].parameters()]
    opt = torch.optim.SGD(params, lr=1e-2, momentum=0.9)
    with ns.watch(net, optimizer=opt, stats=1) as mon:
        for step in range(16):
            if step == 4:
                net[0].requires_grad_(False)
            F.mse_loss(net(torch.randn(8, 4)), torch.zeros(8, 2)).backward()
            want = [grad_norm(net[i]) for i in (0, 2, 4)]
            opt.step()
            opt.zero_grad(set_to_none=False)
            got = mon.last.values[[mon.layers.index(n) for n in ("0", "2", "4")], GRAD]
            np.testing.assert_allclose(got, want, rtol=1e-5, equal_nan=True)
            assert math.isnan(got[0]) == (step >= 4)
        assert [a.rule for a in mon.alerts] == []
    no_hooks(net, opt)


def test_a_model_without_parameters_can_be_watched_with_step() -> None:
    net = nn.Sequential(nn.ReLU(), nn.Tanh())
    with ns.watch(net, stats=1) as mon:
        for _ in range(3):
            x = torch.randn(5, 3, requires_grad=True)
            net(x).sum().backward()
            mon.step()
        v = mon.last.values
        assert mon.step_count == 3
        assert mon.layers == ["0", "1"]
        assert np.isnan(v[:, GRAD]).all()
        assert v[1, METRICS.index("act_mean")] == pytest.approx(
            float(torch.tanh(torch.relu(x.detach())).mean()), rel=1e-5
        )
    no_hooks(net)


def test_sparse_embedding_gradients_on_a_heavy_step() -> None:
    net = nn.Sequential(nn.Embedding(20, 4, sparse=True), nn.Linear(4, 1))
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    with ns.watch(net, optimizer=opt, heavy="always", hist_sample=None) as mon:
        for _ in range(2):
            net(torch.tensor([1, 1, 3])).sum().backward()
            values = net[0].weight.grad.coalesce().values()
            opt.step()
            opt.zero_grad()
        rec = mon.last
    assert rec.values[mon.layers.index("0"), GRAD] == pytest.approx(float(values.double().norm()), rel=1e-5)
    layers, counts = rec.hists["grad"]
    assert counts[layers.index("0")].sum() == values.numel()  # the stored entries, not the dense tensor
    no_hooks(net, opt)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64])
def test_low_and_double_precision_parameters_get_float32_accurate_norms(dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 4)).to(dtype)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    with ns.watch(net, optimizer=opt, stats=2) as mon:
        for step in range(2):  # a full step, then a gradient-norm-only one
            net(torch.randn(16, 64, dtype=dtype)).float().square().mean().backward()
            want = [grad_norm(net[i]) for i in (0, 2)]
            weights = [
                math.sqrt(sum(float(p.detach().double().square().sum()) for p in net[i].parameters()))
                for i in (0, 2)
            ]
            opt.step()
            opt.zero_grad()
            rows = [mon.layers.index(n) for n in ("0", "2")]
            np.testing.assert_allclose(mon.last.values[rows, GRAD], want, rtol=1e-5)
            if step == 0:
                np.testing.assert_allclose(
                    mon.last.values[rows, METRICS.index("weight_norm")], weights, rtol=1e-5
                )


@pytest.mark.parametrize("scale", [1e-4, 300.0])
def test_half_precision_norms_on_full_steps_of_a_large_model(scale: float) -> None:
    """Over 1M gradient elements the full steps square |g| in one reused buffer: in float16 a square
    underflows for typical gradients (~1e-4) and overflows above 256, unless it is formed in float32."""
    torch.manual_seed(0)
    net = nn.Linear(1100, 1000, bias=False).half()  # 1.1M parameters: the large-tensor path
    with ns.watch(net, stats=1, activations=False, delta=False) as mon:
        net(torch.randn(4, 1100).half() * scale).float().sum().backward()
        want = grad_norm(net)
        mon.step()
        assert mon.last.values[0, GRAD] == pytest.approx(want, rel=1e-4)


def test_an_exception_in_the_loop_leaves_no_hook_and_keeps_every_step(tmp_path: Path) -> None:
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)

    def train(run: ns.store.Run) -> ns.Monitor:
        with ns.watch(net, optimizer=opt, run=run) as mon:
            for step in range(20):
                if step == 13:
                    raise RuntimeError("data loader broke")
                F.mse_loss(net(torch.randn(3, 4)), torch.zeros(3, 2)).backward()
                opt.step()
                opt.zero_grad()
        return mon

    with ns.open_run(tmp_path, name="boom") as run, pytest.raises(RuntimeError, match="data loader broke"):
        train(run)
    no_hooks(net, opt)
    _, steps, values = ns.store.open(tmp_path).run("boom").layer_matrix("grad_norm", layers=["0", "2"])
    assert list(steps) == list(range(13))
    assert np.isfinite(values).all()


def test_close_twice_and_a_second_watch_on_the_same_model() -> None:
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    with ns.watch(net, optimizer=opt) as first, ns.watch(net, optimizer=opt) as second:
        F.mse_loss(net(torch.randn(3, 4)), torch.zeros(3, 2)).backward()
        want = grad_norm(net[0])
        opt.step()
        assert first.last.values[0, GRAD] == second.last.values[0, GRAD] == pytest.approx(want, rel=1e-5)
    first.close()
    assert first.closed
    no_hooks(net, opt)


@pytest.mark.parametrize("raise_on", [None, "nan"])
def test_an_inf_gradient_on_a_skipped_step_is_named_and_training_goes_on(
    tmp_path: Path, raise_on: str | None
) -> None:
    # a GradScaler-style loop: collected by mon.step(); the update is skipped when a gradient is inf
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 2))
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2)
    done = 0

    def train(run: ns.store.Run) -> None:
        nonlocal done
        with ns.watch(net, run=run, raise_on=raise_on) as mon:
            for step in range(12):
                F.mse_loss(net(torch.randn(8, 4)), torch.zeros(8, 2)).backward()
                if step == 7:
                    net[2].weight.grad[0, 0] = float("inf")
                mon.step()
                if all(bool(torch.isfinite(p.grad).all()) for p in net.parameters()):
                    opt.step()
                opt.zero_grad()
                done += 1

    with ns.open_run(tmp_path, name="inf") as run:
        if raise_on is None:
            train(run)
        else:
            with pytest.raises(AlertError, match="rule 'nan' fired") as info:
                train(run)
            assert (info.value.alert.rule, info.value.alert.layer, info.value.alert.step) == ("nan", "2", 7)
    no_hooks(net, opt)
    r = ns.store.open(tmp_path).run("inf")
    assert [(a.rule, a.layer, a.step) for a in r.alerts()] == [("nan", "2", 7)]
    _, steps, values = r.layer_matrix("grad_norm", layers=["2"])
    assert done == (7 if raise_on else 12)
    assert list(steps) == list(range(8 if raise_on else 12))
    assert np.isinf(values[0, 7])
    assert np.isfinite(np.delete(values[0], 7)).all()


def test_logged_scalars_keep_their_value_at_the_call(tmp_path: Path) -> None:
    with ns.open_run(tmp_path, name="scalars") as run:
        total = torch.zeros(())
        w = torch.ones((), requires_grad=True)
        for step in range(4):
            total += 1.0  # a running sum, changed in place after it was logged
            run.log({"total": total, "half": total * w / 2, "np": np.float32(step), "n": step}, step=step)
        run.log({"nan": float("nan"), "inf": torch.tensor(float("inf")), "one": torch.ones(1, 1)}, step=4)
    r = ns.store.open(tmp_path).run("scalars")
    assert r.series("total")[1].tolist() == [1.0, 2.0, 3.0, 4.0]
    assert r.series("half")[1].tolist() == [0.5, 1.0, 1.5, 2.0]
    assert r.series("np")[1].tolist() == r.series("n")[1].tolist() == [0.0, 1.0, 2.0, 3.0]
    assert math.isnan(r.series("nan")[1][0])
    assert r.series("inf")[1].tolist() == [math.inf]
    assert r.series("one")[1].tolist() == [1.0]


def test_an_alert_found_while_closing_does_not_replace_the_loops_own_error(tmp_path: Path) -> None:
    """The loop raises while a raise_on rule's step still waits in the host batch: the user sees their
    own exception, the alert is still stored, and the run the monitor opened is marked failed."""
    torch.manual_seed(0)
    # inputs of 1e-9 leave the bias-free first layer with a weight gradient ~1e-7x the others
    net = nn.Sequential(nn.Linear(4, 4, bias=False), nn.Tanh(), nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 2))
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    x, y = torch.randn(8, 4) * 1e-9, torch.randint(0, 2, (8,))
    mon = ns.watch(net, optimizer=opt, run=tmp_path, raise_on="vanishing", stats=1000, heavy="never")

    def train() -> None:
        with mon:
            for _ in range(4):
                F.cross_entropy(net(x), y).backward()
                opt.step()
                opt.zero_grad()
            raise ValueError("the loop's own error")

    with pytest.raises(ValueError, match="the loop's own error"):
        train()
    assert [a.rule for a in mon.alerts] == ["vanishing"]
    assert mon.alerts[0].layer == "0"
    no_hooks(net, opt)
    (info,) = ns.store.open(tmp_path).runs()
    assert info.status == "failed"


def test_run_log_without_step_keeps_the_loops_numbering_beside_the_monitor(tmp_path: Path) -> None:
    """``run.log(values)`` numbers its own calls 0, 1, 2, ...: the monitor's layer rows, written in
    delayed batches at explicit steps, must not shift them."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    x, y = torch.randn(16, 4), torch.randint(0, 2, (16,))
    losses = []
    with ns.open_run(tmp_path, name="r") as run, ns.watch(net, optimizer=opt, run=run):
        for _ in range(20):  # more than two of the monitor's 8-step host batches
            loss = F.cross_entropy(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            run.log({"loss": loss})
            losses.append(loss.item())
    r = ns.store.open(tmp_path).run("r")
    steps, values = r.series("loss")
    assert list(steps) == list(range(20))
    np.testing.assert_allclose(values, losses, rtol=1e-6)
    _, layer_steps, _ = r.layer_matrix("grad_norm")
    assert list(layer_steps) == list(range(20))  # the monitor's step k is the loop's iteration k


def test_two_optimizers_each_give_update_ratios_only_to_their_own_layers() -> None:
    """A GAN-style loop with one monitor per optimizer on the whole model: a layer the other optimizer
    updates has no update ratio in this monitor (NaN, not 0), and its own layers match a hand
    computation of ||w_after - w_before|| / ||w_before||."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 2))
    opt_a = torch.optim.SGD(net[0].parameters(), lr=0.1)
    opt_b = torch.optim.SGD(net[2].parameters(), lr=0.1)
    x, y = torch.randn(8, 4), torch.randint(0, 2, (8,))
    ratio = METRICS.index("update_ratio")
    with ns.watch(net, optimizer=opt_a, stats=1) as mon_a, ns.watch(net, optimizer=opt_b, stats=1) as mon_b:
        F.cross_entropy(net(x), y).backward()
        before = torch.cat([p.detach().flatten().clone() for p in net[0].parameters()])
        opt_a.step()
        after = torch.cat([p.detach().flatten() for p in net[0].parameters()])
        opt_b.step()
        rows_a = mon_a.last.values
        rows_b = mon_b.last.values
    i0, i2 = mon_a.layers.index("0"), mon_a.layers.index("2")
    expected = float((after - before).double().norm() / before.double().norm())
    assert rows_a[i0, ratio] == pytest.approx(expected, rel=1e-5)
    assert math.isnan(rows_a[i2, ratio])
    assert math.isnan(rows_b[mon_b.layers.index("0"), ratio])
    assert rows_b[mon_b.layers.index("2"), ratio] > 0


def test_a_layer_the_optimizer_updates_in_part_keeps_its_update_ratio() -> None:
    """BitFit-style training (the optimizer holds only the biases): every Linear is still updated, so
    its ratio is ||Δ(W, b)|| / ||(W, b)||, not NaN; only a layer the optimizer holds nothing of is NaN."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 2))
    opt = torch.optim.SGD([net[0].bias, net[4].bias], lr=0.1)
    with ns.watch(net, optimizer=opt, stats=1) as mon:
        F.cross_entropy(net(torch.randn(8, 4)), torch.randint(0, 2, (8,))).backward()
        before = [torch.cat([p.detach().flatten().clone() for p in net[i].parameters()]) for i in (0, 4)]
        opt.step()
        got = mon.last.values[:, METRICS.index("update_ratio")]
    for i, w in zip((0, 4), before):
        after = torch.cat([p.detach().flatten() for p in net[i].parameters()])
        want = float((after - w).double().norm() / w.double().norm())
        assert want > 0
        assert got[mon.layers.index(str(i))] == pytest.approx(want, rel=1e-5)
    assert math.isnan(got[mon.layers.index("2")])


def test_run_log_takes_numpy_arrays_of_one_element_and_names_the_shape_of_others(tmp_path: Path) -> None:
    with ns.open_run(tmp_path, name="np") as run:
        run.log({"a": np.array(1.5), "b": np.array([[2.5]], dtype=np.float32), "c": np.int64(3)}, step=0)
        with pytest.raises(ns.errors.ArgumentError, match=r"values\['d'\].*ndarray of shape \(2,\)"):
            run.log({"d": np.ones(2)}, step=1)
    r = ns.store.open(tmp_path).run("np")
    assert [r.series(k)[1].tolist() for k in ("a", "b", "c")] == [[1.5], [2.5], [3.0]]


def test_a_checkpointed_segment_is_counted_once() -> None:
    """torch.utils.checkpoint re-runs its segment's forward during backward: the activation statistics
    must count each sample once, as without checkpointing (act_std's n - 1 showed the double count)."""

    class Net(nn.Module):
        def __init__(self, checkpointed: bool) -> None:
            super().__init__()
            self.checkpointed = checkpointed
            self.block = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh())
            self.head = nn.Linear(8, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if self.checkpointed:
                h = torch.utils.checkpoint.checkpoint(self.block, x, use_reentrant=False)
            else:
                h = self.block(x)
            return self.head(h)

    values = {}
    for checkpointed in (False, True):
        torch.manual_seed(0)
        net = Net(checkpointed)
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        x, y = torch.randn(5, 6), torch.randint(0, 3, (5,))
        with ns.watch(net, optimizer=opt, stats=1) as mon:
            F.cross_entropy(net(x), y).backward()
            opt.step()
        values[checkpointed] = mon.last.values
    np.testing.assert_allclose(values[True], values[False], rtol=1e-5, equal_nan=True)


def test_an_optimizer_of_master_copies_still_gets_the_models_update_ratio() -> None:
    """An optimizer holding none of the model's parameters (fp32 master copies, apex/DeepSpeed style)
    updates the weights by copying: the measured change is the update, not a missing ratio."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 2))
    masters = [p.detach().clone().requires_grad_() for p in net.parameters()]
    opt = torch.optim.SGD(masters, lr=0.1)

    def copy_back(optimizer: torch.optim.Optimizer, args: object, kwargs: object) -> None:
        with torch.no_grad():
            for p, m in zip(net.parameters(), masters):
                p.copy_(m)

    x, y = torch.randn(8, 4), torch.randint(0, 2, (8,))
    ratio = METRICS.index("update_ratio")
    handle = opt.register_step_post_hook(copy_back)  # registered first: runs before the monitor's
    before = torch.cat([p.detach().flatten().clone() for p in net[0].parameters()])
    with ns.watch(net, optimizer=opt, stats=1) as mon:
        F.cross_entropy(net(x), y).backward()
        for p, m in zip(net.parameters(), masters):
            m.grad = p.grad.clone()
        opt.step()
    handle.remove()
    after = torch.cat([p.detach().flatten() for p in net[0].parameters()])
    expected = float((after - before).double().norm() / before.double().norm())
    assert mon.last.values[mon.layers.index("0"), ratio] == pytest.approx(expected, rel=1e-5)
    assert expected > 0


def test_watch_option_typo_names_the_nearest_options() -> None:
    net = nn.Linear(3, 2)
    with pytest.raises(ArgumentError, match=r"histogramz.*Did you mean 'histograms'"):
        ns.watch(net, histogramz=True)
    assert ns.hooks_on(net) == {}
