"""Small offline data sets shipped with netsight (see README.md here for sources and licences)."""

from __future__ import annotations

from importlib import resources

import numpy as np
import torch

__all__ = ["load_mnist"]


def load_mnist(*, seed: int = 0, normalize: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """The 10,000 shipped MNIST digits, shuffled with ``seed``: ``x [10000, 1, 28, 28]``, ``y [10000]``.

    ``normalize``: floats in [0, 1] (else uint8 0..255). Labels are int64.
    """
    with resources.files(__name__).joinpath("mnist_10k.npz").open("rb") as fh:
        data = np.load(fh)
        x = torch.from_numpy(data["x"].copy())
        y = torch.from_numpy(data["y"].astype(np.int64))
    perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))
    x, y = x[perm].unsqueeze(1), y[perm]
    return (x.float() / 255.0 if normalize else x), y
