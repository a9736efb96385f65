"""PNG encoding of uint8 images with the standard library (zlib), so the core needs no image package."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import torch

from ..errors import ArgumentError


def _chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def to_png(image: torch.Tensor, *, compression: int = 6) -> bytes:
    """Encode a uint8 image ``[H, W]`` (grey), ``[H, W, 3]`` (RGB) or ``[H, W, 4]`` (RGBA) as PNG bytes."""
    if not isinstance(image, torch.Tensor) or image.dtype != torch.uint8:
        got = image.dtype if isinstance(image, torch.Tensor) else type(image).__name__
        raise ArgumentError(
            f"image: expected a uint8 tensor, got {got}. Convert with netsight.render.to_uint8(x) first."
        )
    if image.dim() == 2:
        image = image.unsqueeze(-1)
    if image.dim() != 3 or image.shape[-1] not in (1, 3, 4):
        raise ArgumentError(
            f"image: expected shape [H, W], [H, W, 3] or [H, W, 4], got {tuple(image.shape)}. "
            "Channels go last."
        )
    h, w, c = image.shape
    color = {1: 0, 3: 2, 4: 6}[c]
    rows = image.detach().to("cpu").contiguous().numpy().reshape(h, w * c)
    raw = b"".join(b"\x00" + rows[i].tobytes() for i in range(h))
    header = struct.pack(">IIBBBBB", w, h, 8, color, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(raw, compression))
        + _chunk(b"IEND", b"")
    )


def save_png(image: torch.Tensor, path: str | Path) -> Path:
    """Write ``image`` (see :func:`to_png`) to ``path``; parent folders are created. Returns the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(to_png(image))
    return p
