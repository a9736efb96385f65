"""The CPU chunk search of the perturbation loop: its decisions on given timings, and that chunks of
changing sizes give the same scores as one fixed size (every build handles any range length)."""

from __future__ import annotations

import pytest
import torch
from _explain_models import tiny_cnn
from torch import nn

import netsight as ns
from netsight.explain import _features, occlusion, rise
from netsight.explain._features import _ChunkSearch


def _run(search: _ChunkSearch, per_item: dict[int, float], n: int) -> list[int]:
    """Drive the search through a loop of ``n`` items whose forwards cost ``per_item[size]`` seconds
    per item; the sizes it ran, in order."""
    sizes, lo = [], 0
    while lo < n:
        size = search.size
        hi = min(lo + size, n)
        sizes.append(hi - lo)
        search.record(hi - lo, per_item[size] * (hi - lo), n - hi)
        lo = hi
    return sizes


def test_it_doubles_while_at_least_ten_percent_faster_and_keeps_the_best() -> None:
    cost = {8: 10.0, 16: 6.0, 32: 4.0, 64: 3.8, 128: 1.0}  # 64 gains only 5 %: stop at 32
    search = _ChunkSearch(8, 4096)
    sizes = _run(search, cost, 10_000)
    assert sizes[:9] == [8, 8, 8, 16, 16, 16, 32, 32, 32]
    assert sizes[9:12] == [64, 64, 64]  # tried, not better enough
    assert set(sizes[12:-1]) == {32}
    assert not search.active


def test_a_slower_size_is_dropped_after_one_forward() -> None:
    search = _ChunkSearch(8, 4096)
    sizes = _run(search, {8: 1.0, 16: 1.5}, 2_000)
    assert sizes[:4] == [8, 8, 8, 16]
    assert set(sizes[4:-1]) == {8}


def test_it_stops_at_the_limit_and_tries_no_size_without_room_for_eight_chunks() -> None:
    cost = {8: 8.0, 16: 4.0, 32: 2.0, 40: 1.0, 64: 0.5}
    assert max(_run(_ChunkSearch(8, 40), cost, 100_000)) == 40  # the limit, not 64
    short = _run(_ChunkSearch(8, 4096), cost, 100)  # 16 needs 128 items left after the third 8
    assert set(short[:-1]) == {8}
    assert _ChunkSearch(8, 8).active is False  # nothing to search


@pytest.mark.parametrize("method", ["kernel_shap", "lime", "occlusion", "rise"])
def test_chunks_of_changing_sizes_give_the_same_scores_as_one_size(
    method: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With every larger size accepted, the loop runs chunks of 1, 2, 4, ... items: the builds must
    take any range, and the scores must equal those of a fixed chunk (max_batch, no search)."""
    model = tiny_cnn().eval()
    x = torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    options = {
        "kernel_shap": {"features": "grid", "grid": 3, "n_samples": 200},
        "lime": {"features": "grid", "grid": 3, "n_samples": 200},
        "occlusion": {"window": 3, "stride": 2},
        "rise": {"n_masks": 200, "cells": 3},
    }[method]
    fixed = ns.explain(model, x, target=1, method=method, max_batch=7, **options)

    grown: list[int] = []
    record = _ChunkSearch.record

    def spy(self: _ChunkSearch, items: int, seconds: float, remaining: int) -> None:
        grown.append(items)
        record(self, items, seconds, remaining)

    for module in (_features, occlusion, rise):  # start at one item per forward
        monkeypatch.setattr(module, "rows_per_chunk", lambda model, x, max_batch: 1)
    monkeypatch.setattr(_ChunkSearch, "GAIN", float("inf"))  # every larger size counts as faster
    monkeypatch.setattr(_ChunkSearch, "REMAINING", 1)
    monkeypatch.setattr(_ChunkSearch, "record", spy)
    searched = ns.explain(model, x, target=1, method=method, **options)
    assert len(set(grown)) >= 3, grown  # the chunk did change size
    torch.testing.assert_close(searched.attributions, fixed.attributions, rtol=1e-5, atol=1e-6)


def test_a_model_in_training_mode_scores_in_chunks_that_do_not_depend_on_timings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """BatchNorm in training mode normalises by the chunk's own statistics: the chunk must stay the
    one a fixed ``max_batch`` of the same size gives, whatever the forwards' timings."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.LazyLinear(3))
    model(torch.zeros(2, 3, 8, 8))
    model.train()
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    fixed = ns.explain(model, x, target=1, method="occlusion", window=2, stride=2, max_batch=2)
    monkeypatch.setattr(occlusion, "rows_per_chunk", lambda model, x, max_batch: 2)
    monkeypatch.setattr(_ChunkSearch, "GAIN", float("inf"))  # every larger size would count as faster
    monkeypatch.setattr(_ChunkSearch, "REMAINING", 1)
    searched = ns.explain(model, x, target=1, method="occlusion", window=2, stride=2)
    torch.testing.assert_close(searched.attributions, fixed.attributions)


def test_no_search_on_a_given_max_batch() -> None:
    model = nn.Linear(4, 2).eval()
    x = torch.zeros(1, 4)
    assert _features.rows_limit(model, x, max_batch=16) is None
    assert _features.rows_limit(model, x, max_batch=None) >= 1
