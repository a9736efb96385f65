"""Every registered explain method, three ways, leaves the model exactly as it was.

Parametrised from ``netsight.list_methods()``: a method registered anywhere is enrolled here. Each
method's ``MethodInfo.inputs`` picks an example model and input from ``EXAMPLES`` below (add a row when
a new input kind appears). The three runs: a normal one (the result must have a sane shape), one with a
class target out of range (a ``TargetError`` naming the value, unless the method has no class target),
and one where a module inside the model raises during forward (the error propagates). After each, no
hook is left, every ``training`` flag and ``requires_grad`` is as it was, parameters are unchanged,
patched attributes (in-place ReLUs) are back, and no ``.grad`` was written.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

import netsight as ns
from netsight.errors import TargetError


class Boom(nn.Module):
    """Wraps a module; raises inside forward once armed."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.armed = False

    def forward(self, *args: object, **kwargs: object) -> object:
        if self.armed:
            raise RuntimeError("boom: a module raised inside forward")
        return self.inner(*args, **kwargs)


class CNN(nn.Module):
    """In-place ReLUs, BatchNorm, a mixed training state: what breaks careless hooks."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(inplace=True),
            Boom(nn.Conv2d(8, 16, 3, padding=1)),
            nn.ReLU(inplace=True),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


def _image() -> tuple[nn.Module, torch.Tensor, Boom]:
    model = CNN().eval()
    model.features[1].train()  # a submodule in training mode inside an eval model
    model.fc.bias.requires_grad_(False)  # a frozen parameter
    return model, torch.randn(2, 3, 16, 16), model.features[3]


def _transformer() -> tuple[nn.Module, torch.Tensor, Boom]:
    import torchvision

    vit = torchvision.models.VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32, num_classes=5
    ).eval()
    boom = Boom(vit.encoder.layers.encoder_layer_1.mlp)
    vit.encoder.layers.encoder_layer_1.mlp = boom
    return vit, torch.randn(2, 3, 32, 32), boom


class TextClassifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(50, 8)
        self.body = Boom(nn.Sequential(nn.Linear(8, 8), nn.ReLU()))
        self.head = nn.Linear(8, 3)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(self.embed(ids)).mean(1))


def _tokens() -> tuple[nn.Module, torch.Tensor, Boom]:
    model = TextClassifier().eval()
    return model, torch.randint(1, 50, (2, 7)), model.body


def _tabular() -> tuple[nn.Module, torch.Tensor, Boom]:
    body = Boom(nn.Linear(6, 16))
    model = nn.Sequential(body, nn.ReLU(), nn.Linear(16, 3)).eval()
    return model, torch.randn(2, 6), body


#: one example model and input per ``MethodInfo.inputs`` kind: (model, inputs, module that can raise)
EXAMPLES: dict[str, Callable[[], tuple[nn.Module, torch.Tensor, Boom]]] = {
    "image": _image,
    "transformer": _transformer,
    "tokens": _tokens,
    "tabular": _tabular,
}


def _relu_flags(model: nn.Module) -> list[bool]:
    return [m.inplace for m in model.modules() if isinstance(m, nn.ReLU)]


def _check(model: nn.Module, u: object, relus: list[bool]) -> None:
    u.check()  # type: ignore[attr-defined]
    assert _relu_flags(model) == relus, "an in-place flag was not restored"
    assert all(p.grad is None for p in model.parameters()), "a .grad was written into the model"


def test_every_method_is_enrolled() -> None:
    names = ns.list_methods()
    for expected in ("saliency", "integrated_gradients", "grad_cam", "score_cam", "smoothgrad"):
        assert expected in names
    for name in names:
        assert ns.get_method(name).inputs in EXAMPLES, (
            f"{name}: no example for {ns.get_method(name).inputs!r}"
        )


@pytest.mark.parametrize("name", ns.list_methods())
def test_method_leaves_model_untouched(name: str, untouched) -> None:
    info = ns.get_method(name)
    model, x, boom = EXAMPLES[info.inputs]()
    relus = _relu_flags(model)
    u = untouched(model)

    # 1. normal
    ex = ns.explain(model, x, method=name)
    _check(model, u, relus)
    assert isinstance(ex, ns.Explanation)
    assert ex.method == name
    assert ex.attributions.shape[0] == x.shape[0]
    assert torch.isfinite(ex.attributions).all()

    # 2. a class target out of range
    if info.kind == "attention":  # attention maps may have no class target; if they do, it is checked
        try:
            ns.explain(model, x, target=10_000, method=name)
        except TargetError as exc:
            message = str(exc)
        else:
            message = "10000 ignored"
        assert "10000" in message
    else:
        with pytest.raises(TargetError, match="10000"):
            ns.explain(model, x, target=10_000, method=name)
    _check(model, u, relus)

    # 3. a module raising inside forward
    boom.armed = True
    with pytest.raises(Exception) as caught:
        ns.explain(model, x, method=name)
    chain, e = [], caught.value
    while e is not None:
        chain.append(str(e))
        e = e.__cause__ or e.__context__
    assert any("boom" in m for m in chain), chain
    boom.armed = False
    _check(model, u, relus)
