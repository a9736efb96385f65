"""Captured activations and gradients equal an explicit layer-by-layer forward and autograd.grad."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import netsight as ns

TOL = 1e-6


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.shape == b.shape
    err = (a.float() - b.float()).abs().max().item()
    assert err <= TOL, err


def test_cnn_with_inplace_relu_records_conv_output_not_relu(small_cnn: nn.Module) -> None:
    m = small_cnn
    x = torch.randn(4, 3, 12, 12)
    f = m.features
    # explicit forward, keeping every intermediate; ReLUs are out-of-place here
    a0 = f[0](x)
    a1 = f[1](a0)
    a2 = F.relu(a1)
    a3 = f[3](a2)
    a4 = f[4](a3)
    a5 = F.relu(a4)
    out = m.fc(m.pool(a5).flatten(1))
    loss = out[:, 3].sum()
    grads = torch.autograd.grad(loss, [a0, a1, a2, a3, a4, a5])

    with ns.capture(m, layers="features.*", grads=True) as cap:
        m(x)[:, 3].sum().backward()
    assert cap.names == [f"features.{i}" for i in range(6)]
    for i, (a, g) in enumerate(zip([a0, a1, a2, a3, a4, a5], grads)):
        rec = cap[f"features.{i}"]
        _close(rec.activation, a)
        _close(rec.grad, g)
    # the conv followed by BN and an in-place ReLU keeps its own (negative-valued) output
    assert (cap["features.1"].activation < 0).any()


class Twice(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(5, 6)
        self.shared = nn.Linear(6, 6)
        self.out = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.shared(self.inp(x)))
        h = self.shared(h)  # second call of the same module
        return self.out(h)


def test_module_called_twice_keeps_every_call() -> None:
    m = Twice()
    x = torch.randn(3, 5)
    h0 = m.inp(x)
    s1 = m.shared(h0)
    s2 = m.shared(torch.tanh(s1))
    loss = m.out(s2).pow(2).sum()
    g1, g2 = torch.autograd.grad(loss, [s1, s2])

    with ns.capture(m, layers="shared", grads=True) as cap:
        m(x).pow(2).sum().backward()
    rec = cap["shared"]
    assert len(rec.calls) == 2
    _close(rec.calls[0].activation, s1)
    _close(rec.calls[1].activation, s2)
    _close(rec.calls[0].grad, g1)
    _close(rec.calls[1].grad, g2)
    assert rec.activation is not None
    _close(rec.activation, s1)  # cap[name] reads as the first call


class DictOut(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(4, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feat = torch.relu(self.body(x))
        return {"logits": self.head(feat), "feat": feat, "note": "kept"}  # type: ignore[dict-item]


class Wrapper(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = DictOut()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.inner(x)
        return out["logits"] + out["feat"].sum(dim=1, keepdim=True)


def test_dict_output_keeps_structure_and_gradients() -> None:
    m = Wrapper()
    x = torch.randn(2, 4)
    inner = m.inner
    feat = torch.relu(inner.body(x))
    logits = inner.head(feat)
    total = logits + feat.sum(dim=1, keepdim=True)
    loss = total.square().sum()
    g_logits, g_feat = torch.autograd.grad(loss, [logits, feat])

    with ns.capture(m, layers="inner", grads=True) as cap:
        m(x).square().sum().backward()
    rec = cap["inner"]
    assert isinstance(rec.activation, dict)
    assert rec.activation["note"] == "kept"
    _close(rec.activation["logits"], logits)
    _close(rec.activation["feat"], feat)
    _close(rec.grad["logits"], g_logits)
    _close(rec.grad["feat"], g_feat)


def _resnet_explicit(m: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, list[torch.Tensor]]]:
    """ResNet-18 forward written out by hand, keeping every leaf module's output per call."""
    acts: dict[str, list[torch.Tensor]] = {}

    def keep(name: str, t: torch.Tensor) -> torch.Tensor:
        acts.setdefault(name, []).append(t)
        return t

    h = keep("conv1", m.conv1(x))
    h = keep("bn1", m.bn1(h))
    h = keep("relu", F.relu(h))
    h = keep("maxpool", m.maxpool(h))
    for li in range(1, 5):
        layer = getattr(m, f"layer{li}")
        for bi, block in enumerate(layer):
            p = f"layer{li}.{bi}"
            idt = h
            o = keep(f"{p}.conv1", block.conv1(h))
            o = keep(f"{p}.bn1", block.bn1(o))
            o = keep(f"{p}.relu", F.relu(o))
            o = keep(f"{p}.conv2", block.conv2(o))
            o = keep(f"{p}.bn2", block.bn2(o))
            if block.downsample is not None:
                d = keep(f"{p}.downsample.0", block.downsample[0](h))
                idt = keep(f"{p}.downsample.1", block.downsample[1](d))
            h = keep(f"{p}.relu", F.relu(o + idt))
    h = keep("avgpool", m.avgpool(h))
    out = keep("fc", m.fc(torch.flatten(h, 1)))
    return out, acts


@pytest.mark.parametrize("train", [False, True])
def test_resnet18_every_leaf_matches_explicit_forward_and_autograd(train: bool) -> None:
    torchvision = pytest.importorskip("torchvision")
    m = torchvision.models.resnet18(num_classes=10)
    m.train(train)
    x = torch.randn(2, 3, 64, 64)
    # BatchNorm in train mode updates running stats; run the explicit pass on a copy of the state
    state = {k: v.clone() for k, v in m.state_dict().items()}
    out, acts = _resnet_explicit(m, x)
    loss = out[:, 1].sum()
    flat = [(n, i, t) for n, ts in acts.items() for i, t in enumerate(ts)]
    grads = torch.autograd.grad(loss, [t for _, _, t in flat], allow_unused=True)
    m.load_state_dict(state)

    with ns.capture(m, grads=True) as cap:
        m(x)[:, 1].sum().backward()
    assert set(cap.names) == set(acts)
    for (name, i, t), g in zip(flat, grads):
        rec = cap[name].calls[i]
        _close(rec.activation, t)
        if g is None:
            assert rec.grad is None
        else:
            _close(rec.grad, g)
