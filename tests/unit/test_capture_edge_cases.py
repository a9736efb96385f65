"""Edge cases of the capture core: odd selectors and outputs, checkpointing, budgets, stacked reads."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

import netsight as ns
from netsight.capture import reducers, resolve
from netsight.errors import ArgumentError, CaptureError, SelectorError, UnknownNameError


def _mlp() -> nn.Sequential:
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))


def _untouched(model: nn.Module) -> None:
    assert ns.hooks_on(model) == {}


def _ref_stats(x: torch.Tensor) -> np.ndarray:
    v = x.detach().double().reshape(-1).numpy()
    with np.errstate(all="ignore"):
        return np.array(
            [
                v.mean(),
                v.std(ddof=1) if v.size > 1 else 0.0,
                v.min(),
                v.max(),
                np.abs(v).mean(),
                np.sqrt((v * v).sum()),
                (v == 0).mean(),
                np.isnan(v).sum(),
                np.isinf(v).sum(),
            ]
        )


# -- selectors ---------------------------------------------------------------------------------------


def test_name_with_glob_characters_selects_itself_not_a_glob() -> None:
    class Heads(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.heads = nn.ModuleDict({"x[1]": nn.Linear(2, 2), "x1": nn.Linear(2, 2)})

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.heads["x[1]"](x) + self.heads["x1"](x)

    m = Heads()
    assert [n for n, _ in resolve(m, "heads.x[1]")] == ["heads.x[1]"]
    assert [n for n, _ in resolve(m, ["heads.x[1]"])] == ["heads.x[1]"]
    assert [n for n, _ in resolve(m, "heads.x[12]")] == ["heads.x1"]  # still a glob when nothing is named so
    x = torch.randn(3, 2)
    with ns.capture(m, ["heads.x[1]"]) as cap:
        m(x)
    _untouched(m)
    torch.testing.assert_close(cap["heads.x[1]"].activation, m.heads["x[1]"](x))


def test_second_name_of_a_shared_module_selects_in_a_list_as_alone() -> None:
    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = _mlp()
            self.alias = self.body[0]  # named_modules() lists it once, as "body.0"

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.body(x)

    m = Tied()
    assert "alias" not in dict(m.named_modules())
    assert [n for n, _ in resolve(m, "alias")] == ["alias"]
    assert [n for n, _ in resolve(m, ["body.2", "alias"])] == ["body.2", "alias"]
    x = torch.randn(5, 3)
    with ns.capture(m, ["alias", "body.2"]) as cap:
        m(x)
    _untouched(m)
    torch.testing.assert_close(cap["alias"].activation, m.body[0](x))
    # asked for twice, it is selected (and hooked) once, as any other name: one call per forward
    assert [n for n, _ in resolve(m, ["alias", "body.2", "alias"])] == ["body.2", "alias"]
    with ns.capture(m, ["alias", "alias"]) as twice:
        m(x)
    assert len(twice["alias"].calls) == 1


def test_module_selector_misses_are_short_and_say_why() -> None:
    big = nn.Sequential(*[nn.Linear(4, 4) for _ in range(50)])
    with pytest.raises(SelectorError, match="the model itself") as own:
        resolve(big, big)
    with pytest.raises(SelectorError, match="Linear that is not a submodule of Sequential") as foreign:
        resolve(big, [big[0], nn.Linear(4, 4)])
    for exc in (own, foreign):  # not the repr of the whole network
        assert len(str(exc.value)) < 200


# -- modules -----------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Pair:
    a: torch.Tensor
    b: torch.Tensor
    note: str = "pair"


class _DataclassOut(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 3)
        self.pair = _PairModule()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.pair(self.lin(x))
        return (p.a * 2).sum() + p.b.relu_().sum()  # an in-place op on a captured field


class _PairModule(nn.Module):
    def forward(self, x: torch.Tensor) -> _Pair:
        return _Pair(x + 1, x - 1)


def test_dataclass_output_is_detached_reduced_and_gets_gradients() -> None:
    m = _DataclassOut()
    x = torch.randn(4, 3)
    with ns.capture(m, "pair", grads=True, reduce="stats", keep_full=True) as cap:
        m(x).backward()
    _untouched(m)
    rec = cap["pair"]
    h = m.lin(x).detach()
    assert isinstance(rec.activation, _Pair)
    assert rec.activation.note == "pair"
    assert rec.activation.a.grad_fn is None
    assert rec.activation.b.grad_fn is None
    torch.testing.assert_close(rec.activation.a, h + 1)
    torch.testing.assert_close(rec.activation.b, h - 1)  # before the in-place relu_
    assert rec.shape == (4, 3)
    assert rec.dtype == torch.float32
    np.testing.assert_allclose(rec.reduced["stats"].double().numpy(), _ref_stats(h + 1), rtol=1e-5, atol=1e-6)
    assert isinstance(rec.grad, _Pair)
    torch.testing.assert_close(rec.grad.a, torch.full((4, 3), 2.0))
    torch.testing.assert_close(rec.grad.b, (h - 1 > 0).float())


def test_torchscript_submodule_is_refused_clearly_and_nothing_is_left() -> None:
    class Outer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script is deprecated
                self.scripted = torch.jit.script(_mlp())
            self.head = nn.Linear(2, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.scripted(x))

    m = Outer()
    for layers in ("scripted", "scripted.0", None):
        with pytest.raises(CaptureError, match="TorchScript") as exc, ns.capture(m, layers):
            pass
        assert "'scripted" in str(exc.value)
        _untouched(m)
    with ns.capture(m, "head") as cap:  # the rest of the model still works
        m(torch.randn(2, 3))
    assert cap["head"].shape == (2, 2)


# -- gradients ---------------------------------------------------------------------------------------


class _Checkpointed(nn.Module):
    def __init__(self, reentrant: bool) -> None:
        super().__init__()
        self.inner = _mlp()
        self.head = nn.Linear(2, 1)
        self.reentrant = reentrant

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(checkpoint(self.inner, x, use_reentrant=self.reentrant))


def test_checkpoint_recomputation_is_not_a_second_call() -> None:
    m = _Checkpointed(reentrant=False)
    x = torch.randn(5, 3, requires_grad=True)
    with ns.capture(m, ["inner.0", "inner.2"], grads=True, reduce="stats", keep_full=True) as cap:
        m(x).sum().backward()
    _untouched(m)
    h = m.inner[0](x).detach().requires_grad_()
    m.head(m.inner[2](m.inner[1](h))).sum().backward()
    assert len(cap["inner.0"].calls) == 1
    torch.testing.assert_close(cap["inner.0"].activation, h.detach())
    torch.testing.assert_close(cap["inner.0"].grad, h.grad)
    labels, table = cap.stacked("stats")
    assert labels == ["inner.0", "inner.2"]
    assert table.shape == (2, 9)


def test_reentrant_checkpoint_with_grads_names_the_fix() -> None:
    m = _Checkpointed(reentrant=True)
    with (
        pytest.raises(CaptureError, match="use_reentrant=False"),
        ns.capture(m, "inner.0", grads=True),
    ):
        m(torch.randn(2, 3, requires_grad=True)).sum().backward()
    _untouched(m)
    with ns.capture(m, "inner.0") as cap:  # without grads: one call, not the recomputation too
        m(torch.randn(2, 3, requires_grad=True)).sum().backward()
    assert len(cap["inner.0"].calls) == 1


@pytest.mark.parametrize("max_bytes", [None, 960, 900])
def test_second_backward_never_leaves_the_first_gradient(max_bytes: int | None) -> None:
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(10, 10), nn.Linear(10, 10), nn.Linear(10, 10))
    x = torch.randn(4, 10)  # each output and each gradient: 160 bytes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ns.errors.CaptureBudgetWarning)
        with ns.capture(m, None, grads=True, max_bytes=max_bytes) as cap:
            y = m(x)
            y.sum().backward(retain_graph=True)
            (3 * y).sum().backward()
    _untouched(m)
    h = [x]
    for layer in m:
        h.append(layer(h[-1]))
    outs = [t.detach().requires_grad_() for t in h[1:]]
    for i, name in enumerate(["0", "1", "2"]):
        (want,) = torch.autograd.grad((3 * m[i + 1 :](outs[i])).sum(), outs[i])  # m[3:] is the identity
        rec = cap[name]
        if rec.grad is not None:
            torch.testing.assert_close(rec.grad, want)  # the latest pass's gradient, never the first's
        if "stats" in rec.grad_reduced:
            got = rec.grad_reduced["stats"].double().numpy()
            np.testing.assert_allclose(got, _ref_stats(want), rtol=1e-5)
        assert rec.grad is not None or "stats" in rec.grad_reduced
    if max_bytes is not None:
        assert cap.nbytes <= max_bytes


# -- reductions --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "x",
    [
        torch.tensor([1.0, float("nan"), -2.0, 0.0]),
        torch.tensor([float("-inf"), float("inf"), 0.0]),
        torch.full((3,), float("nan")),
        torch.zeros(7),
        torch.tensor([3.5]),
        torch.randn(20_000, dtype=torch.float64) * 0.01 + 1000,
    ],
    ids=["nan", "inf", "all-nan", "zeros", "single", "large-mean"],
)
def test_stats_edge_values_match_float64(x: torch.Tensor) -> None:
    np.testing.assert_allclose(
        reducers.stats(x).double().numpy(), _ref_stats(x), rtol=1e-5, atol=1e-7, equal_nan=True
    )


def test_downsample_of_an_unpooled_output_is_not_changed_by_a_later_inplace_op() -> None:
    m = nn.Sequential(nn.Linear(3, 4), nn.ReLU(inplace=True))
    x = torch.randn(6, 3)
    with ns.capture(m, "0", reduce="downsample") as cap:
        m(x)
    torch.testing.assert_close(cap["0"].reduced["downsample"], m[0](x).detach())


def test_histogram_sample_uses_at_most_sample_elements() -> None:
    x = torch.arange(10.0)
    edges = torch.arange(10.0) + 0.5  # one element per bin
    for sample in (3, 4, 7, 9):
        counts = reducers.Histogram(edges, sample=sample)(x)
        assert int((counts > 0).sum()) <= sample
        assert float(counts.sum()) == pytest.approx(10.0)


def test_stacked_refuses_what_it_cannot_stack() -> None:
    m = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Conv2d(2, 3, 3))
    with ns.capture(m, None, reduce=["stats", "topk", "downsample"]) as cap:
        m(torch.randn(2, 1, 8, 8))
    assert cap.stacked("stats")[1].shape == (2, 9)
    with pytest.raises(UnknownNameError, match="Did you mean 'stats'"):
        cap.stacked("stat")
    with pytest.raises(ArgumentError, match="'topk' gave a dict"):
        cap.stacked("topk")
    with pytest.raises(ArgumentError, match=r"\(2, 2, 16, 16\) for '0' but \(2, 3, 16, 16\) for '1'"):
        cap.stacked("downsample")
    with ns.capture(m, None) as full:
        m(torch.randn(2, 1, 8, 8))
    with pytest.raises(UnknownNameError, match="pass reduce='stats'"):
        full.stacked("stats")
