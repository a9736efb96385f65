"""AttentionMaps: the attention probabilities captured from a model, by module path."""

from __future__ import annotations

import base64
import html
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import torch

from ..errors import ArgumentError, closest
from ._reduce import Reduction

__all__ = ["AttentionMaps"]


@dataclass(frozen=True)
class AttentionMaps:
    """Post-softmax attention of every captured module, ``[batch, heads, query, key]``.

    Attributes:
        maps: kept probabilities by module path (execution order). With ``reduce=``, heads and query
            rows are those kept (``[B, H', Q', K]``); with ``topk`` these are the top-k values
            ``[B, H', Q', k]`` and :attr:`indices` holds their key positions.
        indices: top-k key indices by module path (empty without ``topk``).
        shapes: each module's full map shape ``(B, H, Q, K)`` before reduction.
        reduction: what was kept (:class:`~netsight.attention.Reduction`).
        rollout: the attention rollout ``[B, T, T]`` accumulated during the capture (``rollout=True``),
            else ``None``.
        kinds: the source of each module: ``"mha"``, ``"hf"`` or ``"timm"``.
        tokens: token strings for the pictures, when given.
    """

    maps: Mapping[str, torch.Tensor]
    indices: Mapping[str, torch.Tensor] = field(default_factory=dict)
    shapes: Mapping[str, tuple[int, int, int, int]] = field(default_factory=dict)
    reduction: Reduction = field(default_factory=Reduction)
    rollout: torch.Tensor | None = None
    kinds: Mapping[str, str] = field(default_factory=dict)
    tokens: tuple[str, ...] | None = None

    @property
    def names(self) -> list[str]:
        """Attention module paths, in the order they ran (``[i]`` marks a module's later calls)."""
        return list(self.maps)

    def __len__(self) -> int:
        return len(self.maps)

    def __iter__(self) -> Iterator[str]:
        return iter(self.maps)

    def __contains__(self, name: object) -> bool:
        return name in self.maps

    def _key(self, name: str) -> str:
        if name in self.maps:
            return name
        near = closest(name, self.maps)
        hint = f" Did you mean {', '.join(repr(n) for n in near)}?" if near else ""
        raise KeyError(f"{name!r} is not a captured attention module.{hint} See maps.names.")

    def __getitem__(self, name: str) -> torch.Tensor:
        """``[B, H', Q', K]`` probabilities; top-k captures are scattered into zeros (dense)."""
        key = self._key(name)
        values = self.maps[key]
        idx = self.indices.get(key)
        if idx is None:
            return values
        dense = values.new_zeros((*values.shape[:-1], self.shapes[key][-1]))
        return dense.scatter_(-1, idx, values)

    def topk(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(values, key_indices)`` of a top-k capture, each ``[B, H', Q', k]``."""
        key = self._key(name)
        if key not in self.indices:
            raise ArgumentError(
                f"name: {name!r} was captured without topk; capture with reduce={{'topk': k}}."
            )
        return self.maps[key], self.indices[key]

    def rows(self, name: str) -> torch.Tensor:
        """The query rows kept for ``name`` (indices into the full map's query axis)."""
        n = self.shapes[self._key(name)][2]
        idx = self.reduction.row_index(n)
        return torch.arange(n) if idx is None else idx

    def stack(self) -> torch.Tensor:
        """Every layer's (dense) map stacked: ``[L, B, H', Q', K]``; the shapes must agree."""
        dense = [self[n] for n in self.names]
        shapes = {tuple(d.shape) for d in dense}
        if len(shapes) != 1:
            raise ArgumentError(
                f"maps: the layers have different shapes {sorted(shapes)}; select layers of one kind "
                "with layers=... to stack them."
            )
        return torch.stack(dense)

    def head_mean(self) -> dict[str, torch.Tensor]:
        """Each layer's map averaged over heads, ``[B, Q', K]`` by module path."""
        return {n: self[n].mean(dim=1) for n in self.names}

    def layer_mean(self) -> torch.Tensor:
        """The maps averaged over layers, ``[B, H', Q', K]``."""
        return self.stack().mean(dim=0)

    # -- pictures ----------------------------------------------------------------------------------
    def grid(self, sample: int = 0, *, cmap: str = "viridis", cell: int = 64) -> torch.Tensor:
        """A layer-by-head grid of heatmaps, uint8 ``[H_img, W_img, 3]`` (see :func:`pictures.head_grid`)."""
        from .pictures import head_grid

        return head_grid(self, sample=sample, cmap=cmap, cell=cell)

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td><code>{html.escape(n)}</code></td><td>{html.escape(self.kinds.get(n, ''))}</td>"
            f"<td>{tuple(self.shapes.get(n, ()))}</td><td>{tuple(self.maps[n].shape)}</td></tr>"
            for n in self.names
        )
        img = ""
        if self.maps and self.indices == {} and all(v.shape[-1] <= 512 for v in self.maps.values()):
            try:
                from ..render import to_png

                png = to_png(self.grid(cell=48).cpu())
                img = (
                    '<br/><img style="image-rendering:pixelated" '
                    f'src="data:image/png;base64,{base64.b64encode(png).decode()}"/>'
                )
            except ArgumentError:
                img = ""
        return (
            f"<div><b>AttentionMaps</b> · {len(self.maps)} modules · reduction: "
            f"{html.escape(self.reduction.describe())}<table><tr><th>module</th><th>source</th>"
            f"<th>full shape</th><th>kept</th></tr>{rows}</table>{img}</div>"
        )

    def __repr__(self) -> str:
        first = f", first={self.names[0]!r} {tuple(self.maps[self.names[0]].shape)}" if self.maps else ""
        return f"AttentionMaps({len(self.maps)} modules, reduction={self.reduction.describe()!r}{first})"
