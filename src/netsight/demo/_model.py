"""The demo's small image classifier: two conv blocks and a two-layer head, with readable layer names."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

__all__ = ["DemoCNN"]


class DemoCNN(nn.Module):
    """A small CNN for 28x28 digits or 32x32 colour images.

    Layers (the names used in the store, the dashboard and on the command line)::

        features.conv1, .bn1, .relu1  [B, w, H, W]       features.pool1  [B, w, H/2, W/2]
        features.conv2, .bn2, .relu2  [B, 2w, H/2, W/2]  features.pool2  [B, 2w, H/4, W/4]
        classifier.fc1, .bn, .relu    [B, 64]
        classifier.fc2                [B, classes]       (logits)

    Batch normalisation keeps every unit in use (no dead ReLUs), so a healthy run raises no alert.

    Args:
        in_channels: 1 for MNIST digits, 3 for CIFAR-10.
        classes: number of classes.
        image_size: input height and width (must be divisible by 4).
        width: channels of the first conv layer (the second has twice as many).
    """

    def __init__(
        self, in_channels: int = 1, classes: int = 10, image_size: int = 28, width: int = 16
    ) -> None:
        super().__init__()
        self.features = nn.Sequential(
            OrderedDict(
                [
                    ("conv1", nn.Conv2d(in_channels, width, 3, padding=1)),
                    ("bn1", nn.BatchNorm2d(width)),
                    ("relu1", nn.ReLU()),
                    ("pool1", nn.MaxPool2d(2)),
                    ("conv2", nn.Conv2d(width, 2 * width, 3, padding=1)),
                    ("bn2", nn.BatchNorm2d(2 * width)),
                    ("relu2", nn.ReLU()),
                    ("pool2", nn.MaxPool2d(2)),
                ]
            )
        )
        side = image_size // 4
        self.classifier = nn.Sequential(
            OrderedDict(
                [
                    ("fc1", nn.Linear(2 * width * side * side, 64)),
                    ("bn", nn.BatchNorm1d(64)),
                    ("relu", nn.ReLU()),
                    ("fc2", nn.Linear(64, classes)),
                ]
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.classifier(self.features(x).flatten(1))  # [B, classes]
        return out
