"""Targets known on the host are resolved against a device's scores without reading the device."""

from __future__ import annotations

import pytest
import torch

from netsight.errors import TargetError
from netsight.explain._common import _resolve_on_host, prepare_target, resolve_chunk


def test_host_resolution_equals_the_device_path() -> None:
    gen = torch.Generator().manual_seed(0)
    scores = torch.randn(6, 5, generator=gen)
    for spec in (None, 3, [0, 4, 1, 1, 2, 3], torch.tensor([4, 0, 0, 2, 1, 3])):
        t = prepare_target(spec, 6, torch.device("cpu"))
        assert isinstance(t, torch.Tensor)
        assert t.device.type == "cpu"
        want = resolve_chunk(scores, t)  # scores on the CPU: the general path
        got = _resolve_on_host(scores, t)
        assert torch.equal(got, want), spec
    mixed = torch.tensor([-1, 2, -1, 0, 4, -1])  # -1: "the predicted class" of that sample
    assert torch.equal(_resolve_on_host(scores, mixed), torch.where(mixed < 0, scores.argmax(1), mixed))


def test_host_resolution_names_a_class_out_of_range() -> None:
    t = prepare_target([1, 7], 2, torch.device("cpu"))
    assert isinstance(t, torch.Tensor)
    with pytest.raises(TargetError, match=r"class 7 is out of range for an output with 5 classes"):
        _resolve_on_host(torch.zeros(2, 5), t)


def test_a_target_tensor_is_copied_to_the_host_and_checked_there() -> None:
    user = torch.tensor([[2], [0], [1]], dtype=torch.int32)
    t = prepare_target(user, 3, torch.device("cpu"))
    assert isinstance(t, torch.Tensor)
    assert t.dtype == torch.long
    assert t.device.type == "cpu"
    assert t.tolist() == [2, 0, 1]
    assert prepare_target(torch.tensor(4), 2, torch.device("cpu")).tolist() == [4, 4]  # type: ignore[union-attr]
    with pytest.raises(TargetError, match=r"got 2 classes \[1, 2\] for a batch of 3 samples"):
        prepare_target(torch.tensor([1, 2]), 3, torch.device("cpu"))
    with pytest.raises(TargetError, match="class -2 is negative"):
        prepare_target(torch.tensor([1, -2, 0]), 3, torch.device("cpu"))
