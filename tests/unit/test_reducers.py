"""Reducers checked against independent float64 numpy computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from netsight.capture import reducers
from netsight.capture.reducers import STAT_NAMES
from netsight.errors import ArgumentError, UnknownNameError


def _expected(x: torch.Tensor) -> dict[str, float]:
    a = x.detach().double().numpy().ravel()
    finite = a[np.isfinite(a)]
    n = a.size
    if finite.size != n:
        nan_ = float("nan")
        moments = dict.fromkeys(("mean", "std", "abs_mean", "l2"), nan_)
    else:
        moments = {
            "mean": a.mean(),
            "std": a.std(ddof=1) if n > 1 else 0.0,
            "abs_mean": np.abs(a).mean(),
            "l2": math.sqrt((a * a).sum()),
        }
    return {
        **moments,
        "min": np.nanmin(a) if not np.isnan(a).any() else float("nan"),
        "max": np.nanmax(a) if not np.isnan(a).any() else float("nan"),
        "zero_frac": float((a == 0).sum()) / n,
        "nan_count": float(np.isnan(a).sum()),
        "inf_count": float(np.isinf(a).sum()),
    }


def _check(x: torch.Tensor, rel: float = 1e-5) -> None:
    got = reducers.stats_dict(reducers.stats(x))
    want = _expected(x)
    for k in STAT_NAMES:
        g, w = got[k], want[k]
        if math.isnan(w):
            assert math.isnan(g) or k in ("mean", "std", "abs_mean", "l2"), (k, g, w)
            continue
        assert g == pytest.approx(w, rel=rel, abs=1e-6), (k, g, w)


@pytest.mark.parametrize(
    "make",
    [
        lambda: torch.randn(3, 5, 7),
        lambda: torch.randn(20_000) * 0.01 + 50.0,  # large mean against a small spread
        lambda: F.relu(torch.randn(4, 8, 33, 17)),  # zeros, non-negative
        lambda: torch.randn(2, 3, 9, 9).to(memory_format=torch.channels_last),
        lambda: torch.randn(6, 10).t(),  # non-contiguous
        lambda: torch.randn(100, 300)[:, ::3],
        lambda: torch.tensor([2.5]),
        lambda: -torch.rand(1000) - 1.0,
    ],
)
def test_stats_match_numpy(make) -> None:  # type: ignore[no-untyped-def]
    _check(make())


def test_stats_half_precision_accumulates_in_float32() -> None:
    x = (torch.randn(50_000) * 3 + 1).half()
    _check(x, rel=1e-3)  # the input itself is only fp16-exact; moments accumulate in fp32/fp64


def test_stats_count_nan_and_inf() -> None:
    x = torch.randn(1000)
    x[3] = float("nan")
    x[10] = float("inf")
    x[11] = float("-inf")
    x[12] = float("nan")
    v = reducers.stats_dict(reducers.stats(x))
    assert v["nan_count"] == 2
    assert v["inf_count"] == 2
    assert math.isnan(v["mean"])


def test_stats_empty_and_integer() -> None:
    v = reducers.stats_dict(reducers.stats(torch.zeros(0)))
    assert math.isnan(v["mean"])
    assert v["nan_count"] == 0
    _check(torch.arange(10))


def test_stats_many_stacks_rows() -> None:
    xs = [torch.randn(5, 5), torch.rand(10)]
    out = reducers.stats_many(xs)
    assert out.shape == (2, len(STAT_NAMES))
    torch.testing.assert_close(out[1], reducers.stats(xs[1]))


def test_histogram_matches_explicit_bin_comparisons() -> None:
    edges = reducers.log_edges(1e-3, 1e2, per_decade=2)
    x = torch.randn(5000) * 10
    x[0] = 0.0
    x[1] = float("nan")
    counts = reducers.Histogram(edges)(x)
    e = edges.numpy()
    a = x.numpy()
    a = a[~np.isnan(a)]
    want = [np.sum(a < e[0])]
    want += [np.sum((a >= e[i]) & (a < e[i + 1])) for i in range(len(e) - 1)]
    want += [np.sum(a >= e[-1])]
    assert counts.tolist() == [float(w) for w in want]
    assert counts.sum().item() == 4999


def test_histogram_sampling_estimates_the_full_counts() -> None:
    edges = torch.tensor([-1.0, 0.0, 1.0])
    x = torch.randn(1_000_000)
    est = reducers.Histogram(edges, sample=100_000)(x)
    exact = reducers.Histogram(edges)(x)
    assert est.sum().item() == pytest.approx(1_000_000, rel=1e-6)
    assert torch.allclose(est, exact, rtol=0.02)


def test_log_edges_shape_and_errors() -> None:
    e = reducers.log_edges(1e-2, 1e2, per_decade=1)
    assert e.tolist() == pytest.approx([-100, -10, -1, -0.1, -0.01, 0.01, 0.1, 1, 10, 100])
    with pytest.raises(ArgumentError, match="lo, hi"):
        reducers.log_edges(1.0, 0.5)


def test_topk_picks_highest_energy_channels() -> None:
    x = torch.randn(2, 6, 4, 4)
    x[:, 4] *= 10
    x[:, 1] *= 5
    out = reducers.TopK(k=2)(x)
    energy = (x**2).mean(dim=(0, 2, 3))
    order = sorted(range(6), key=lambda c: -energy[c].item())[:2]
    assert out["indices"].tolist() == order
    assert torch.equal(out["maps"], x[:, order])


def test_downsample_averages_blocks() -> None:
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    got = reducers.Downsample(size=2)(x)
    want = torch.tensor([[[[2.5, 4.5], [10.5, 12.5]]]])
    assert torch.equal(got, want)


def test_get_reducer_suggests_names() -> None:
    with pytest.raises(UnknownNameError, match="Did you mean 'stats'"):
        reducers.get_reducer("stat")
    assert reducers.get_reducer(lambda t: t.sum()).name == "<lambda>"
