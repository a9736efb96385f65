"""Capture what flows through a model: activations, gradients, and a picture of a conv layer.

python docs/examples/capture_activations.py
"""

from __future__ import annotations

import torch
from torch import nn

import netsight as ns
from netsight.render import feature_grid, save_png

model = nn.Sequential(
    nn.Conv2d(1, 8, 3, padding=1),
    nn.ReLU(inplace=True),
    nn.MaxPool2d(2),
    nn.Conv2d(8, 16, 3, padding=1),
    nn.ReLU(),
    nn.AdaptiveAvgPool2d(1),
    nn.Flatten(),
    nn.Linear(16, 10),
)
x = torch.rand(4, 1, 28, 28)

# One forward (and backward) pass with hooks; the hooks are gone when the block ends.
with ns.capture(model, layers=["0", "3"], grads=True) as cap:
    out = model(x)
    out[:, 3].sum().backward()

print(cap.names)  # ['0', '3']
act = cap["0"].activation  # [4, 8, 28, 28]: the conv's output, before the in-place ReLU changed it
grad = cap["0"].grad  # d out[:, 3].sum() / d activation, same shape
print(tuple(act.shape), float(grad.abs().mean()))

# Summaries instead of full tensors: statistics reduced on the device as the pass runs.
with torch.no_grad(), ns.capture(model, layers=nn.Conv2d, reduce="stats") as cap:
    model(x)
labels, stats = cap.stacked("stats")  # one [layers, 9] tensor for all layers
print(labels, tuple(stats.shape))

# The channels of a conv layer as one image (the founding example's activation maps, done with hooks).
with torch.no_grad(), ns.capture(model, layers="3") as cap:
    model(x)
grid = feature_grid(cap["3"], sample=0, scale=4)  # uint8 [H, W, 3]
save_png(grid, "feature_grid.png")
assert ns.hooks_on(model) == {}  # nothing is left on the model
