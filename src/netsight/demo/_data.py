"""The demo's data: the shipped MNIST digits (offline) or CIFAR-10 through torchvision."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from netsight.errors import ArgumentError

__all__ = ["DATASETS", "DemoData", "load"]

DATASETS = ("mnist", "cifar10")

_CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
_CIFAR_STD = (0.2470, 0.2435, 0.2616)
CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@dataclass(frozen=True)
class DemoData:
    """Train and test tensors, ready for the model, plus what is needed to draw them.

    ``x_*``: float ``[N, C, H, W]`` (normalised for CIFAR-10, in [0, 1] for MNIST); ``y_*``: int64 ``[N]``.
    ``mean``/``std`` undo the normalisation for pictures; ``classes`` names the labels.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def channels(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.x_train.shape[-1])

    def pictures(self, x: torch.Tensor) -> torch.Tensor:
        """Undo the normalisation: images in [0, 1], ``[B, C, H, W]``."""
        mean = torch.tensor(self.mean, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, -1, 1, 1)
        return (x * std + mean).clamp(0, 1)


def _mnist(seed: int, train_size: int, test_size: int) -> DemoData:
    from netsight.data import load_mnist

    x, y = load_mnist(seed=seed)
    if train_size + test_size > x.shape[0]:
        raise ArgumentError(
            f"train_size + test_size: {train_size} + {test_size} is more than the {x.shape[0]} shipped "
            "MNIST digits; ask for fewer (the default is 8000 + 2000)."
        )
    return DemoData(
        name="mnist",
        x_train=x[:train_size],
        y_train=y[:train_size],
        x_test=x[x.shape[0] - test_size :],
        y_test=y[x.shape[0] - test_size :],
        classes=tuple(str(i) for i in range(10)),
        mean=(0.0,),
        std=(1.0,),
    )


def _cifar10(seed: int, train_size: int, test_size: int, root: Path, download: bool) -> DemoData:
    try:
        from torchvision.datasets import CIFAR10
    except ImportError as exc:
        raise ArgumentError(
            "data: 'cifar10' needs torchvision; install it (pip install 'netsight[vision]') or use "
            "--data mnist."
        ) from exc
    try:
        train = CIFAR10(str(root), train=True, download=download)
        test = CIFAR10(str(root), train=False, download=download)
    except (OSError, RuntimeError) as exc:
        raise ArgumentError(
            f"data: CIFAR-10 is not in {root} and could not be downloaded ({exc}). Put the "
            "'cifar-10-batches-py' folder there (--data-dir), or use --data mnist, which works offline."
        ) from exc
    g = torch.Generator().manual_seed(seed)

    def tensors(ds: CIFAR10, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.from_numpy(ds.data).permute(0, 3, 1, 2)  # [N, 3, 32, 32] uint8
        y = torch.as_tensor(ds.targets, dtype=torch.int64)
        idx = torch.randperm(x.shape[0], generator=g)[: min(n, x.shape[0])]
        mean = torch.tensor(_CIFAR_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(_CIFAR_STD).view(1, 3, 1, 1)
        return (x[idx].float() / 255 - mean) / std, y[idx]

    x_train, y_train = tensors(train, train_size)
    x_test, y_test = tensors(test, test_size)
    return DemoData("cifar10", x_train, y_train, x_test, y_test, CIFAR_CLASSES, _CIFAR_MEAN, _CIFAR_STD)


def load(
    name: str,
    *,
    seed: int = 0,
    train_size: int = 8000,
    test_size: int = 2000,
    root: str | Path | None = None,
    download: bool = True,
) -> DemoData:
    """Load the demo's data set by name (``"mnist"`` or ``"cifar10"``), shuffled with ``seed``.

    ``root``: where CIFAR-10 lives or is downloaded to (default ``~/.cache/netsight/cifar10``).
    """
    if train_size < 1 or test_size < 1:
        raise ArgumentError(
            f"train_size/test_size: expected positive sizes, got {train_size} and {test_size}."
        )
    if name == "mnist":
        return _mnist(seed, train_size, test_size)
    if name == "cifar10":
        where = Path(root) if root is not None else Path.home() / ".cache" / "netsight" / "cifar10"
        return _cifar10(seed, train_size, test_size, where.expanduser(), download)
    from netsight.errors import UnknownNameError, closest

    near = closest(name, DATASETS)
    hint = f" Did you mean {near[0]!r}?" if near else ""
    raise UnknownNameError(f"data: unknown data set {name!r}; choose one of {', '.join(DATASETS)}.{hint}")
