"""What a layer method's pass records: no graph below the layer, the user's flags untouched."""

from __future__ import annotations

import torch
from torch import nn

import netsight as ns


class Spy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.grad_modes: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.grad_modes.append(torch.is_grad_enabled())
        return x


def test_grad_cam_records_no_graph_below_the_layer_and_keeps_requires_grad() -> None:
    before, after = Spy(), Spy()
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), before, nn.ReLU(), nn.Conv2d(4, 6, 3, padding=1), after, nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3),
    )  # fmt: skip
    net[0].weight.requires_grad_(False)  # a user's frozen layer stays frozen, the others trainable
    flags = [p.requires_grad for p in net.parameters()]
    x = torch.randn(2, 3, 8, 8)
    ex = ns.explain(net, x, target=1, method="grad_cam", layer="3")
    # the last forward is the explaining pass (a shape probe may run before it, without gradients)
    assert before.grad_modes[-1] is False  # below the layer: no graph
    assert after.grad_modes[-1] is True
    assert [p.requires_grad for p in net.parameters()] == flags
    assert all(p.grad is None for p in net.parameters())
    # the same map as differentiating the whole graph by hand
    acts: dict[str, torch.Tensor] = {}
    h = net[3].register_forward_hook(lambda m, i, o: acts.__setitem__("a", o))
    try:
        out = net(x)
    finally:
        h.remove()
    (g,) = torch.autograd.grad(out[:, 1].sum(), acts["a"])
    want = torch.relu((g.mean(dim=(2, 3), keepdim=True) * acts["a"]).sum(1, keepdim=True)).detach()
    torch.testing.assert_close(ex.meta["raw"], want, atol=1e-6, rtol=1e-5)
