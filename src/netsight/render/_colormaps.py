"""Colour maps as lookup tables applied in torch on the tensor's device (STYLE.md, principle 12)."""

from __future__ import annotations

from functools import lru_cache

import torch

from ..errors import UnknownNameError, closest

# Anchor colours of perceptually uniform maps (matplotlib's viridis and magma, sampled at ninths);
# used when matplotlib is not installed. With matplotlib, its exact 256-entry tables are used.
_ANCHORS: dict[str, list[tuple[float, float, float]]] = {
    "viridis": [
        (0.267, 0.005, 0.329),
        (0.283, 0.141, 0.458),
        (0.254, 0.265, 0.530),
        (0.207, 0.372, 0.553),
        (0.164, 0.471, 0.558),
        (0.128, 0.567, 0.551),
        (0.135, 0.659, 0.518),
        (0.267, 0.749, 0.441),
        (0.478, 0.821, 0.318),
        (0.741, 0.873, 0.150),
        (0.993, 0.906, 0.144),
    ],
    "magma": [
        (0.001, 0.000, 0.014),
        (0.082, 0.059, 0.222),
        (0.232, 0.060, 0.437),
        (0.390, 0.100, 0.502),
        (0.550, 0.161, 0.506),
        (0.716, 0.215, 0.475),
        (0.868, 0.288, 0.409),
        (0.967, 0.439, 0.360),
        (0.994, 0.624, 0.427),
        (0.995, 0.812, 0.572),
        (0.987, 0.991, 0.750),
    ],
    "gray": [(0.0, 0.0, 0.0), (1.0, 1.0, 1.0)],
    "bwr": [(0.0, 0.0, 1.0), (1.0, 1.0, 1.0), (1.0, 0.0, 0.0)],
}
NAMES = ("jet", "viridis", "magma", "inferno", "plasma", "gray", "bwr", "coolwarm", "RdBu_r", "hot", "turbo")


@lru_cache(maxsize=32)
def _lut(name: str) -> torch.Tensor:
    try:
        import matplotlib as mpl

        cmap = mpl.colormaps[name]
        xs = [i / 255 for i in range(256)]
        return torch.tensor([cmap(x)[:3] for x in xs], dtype=torch.float32)
    except ImportError:
        pass
    except KeyError:
        _unknown(name)
    if name == "jet":
        x = torch.linspace(0, 1, 256)
        return torch.stack([(1.5 - (4 * x - c).abs()).clamp(0, 1) for c in (3.0, 2.0, 1.0)], dim=1)
    if name in _ANCHORS:
        anchors = torch.tensor(_ANCHORS[name], dtype=torch.float32)
        pos = torch.linspace(0, len(anchors) - 1, 256)
        lo = pos.floor().long().clamp(max=len(anchors) - 2)
        frac = (pos - lo).unsqueeze(1)
        return anchors[lo] * (1 - frac) + anchors[lo + 1] * frac
    _unknown(name)
    raise AssertionError("unreachable")


def _unknown(name: str) -> None:
    near = closest(name, NAMES)
    hint = f" Did you mean {', '.join(repr(n) for n in near)}?" if near else ""
    raise UnknownNameError(f"cmap: unknown colour map {name!r}.{hint} Try 'jet', 'viridis' or 'magma'.")


def apply_cmap(values: torch.Tensor, cmap: str = "jet") -> torch.Tensor:
    """Map values in [0, 1] to RGB floats in [0, 1]: ``[...]`` -> ``[..., 3]``, on ``values``' device."""
    lut = _lut(cmap).to(values.device)
    idx = (values.float().clamp(0, 1) * 255).round().long()
    return lut[idx]
