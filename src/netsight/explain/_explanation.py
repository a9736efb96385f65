"""Explanation: the frozen result of every attribution method, and how it is drawn."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from netsight.errors import ArgumentError

__all__ = ["Explanation"]


@dataclass(frozen=True)
class Explanation:
    """What a method attributes to what, for which target.

    Attributes:
        attributions: input-space methods: the input's shape (``[B, C, H, W]``); layer methods:
            ``[B, 1, H, W]`` at the input's size; token methods: ``[B, T]``; tabular: ``[B, F]``.
        method: the registry name of the method.
        target: ``[B]`` long, the classes explained (resolved from an int, a sequence or the predicted
            class); ``None`` for a callable target.
        layer: the module path a layer method used (``None`` for input-space methods).
        meta: extra results and provenance: ``"raw"`` (layer methods' map at the layer's resolution,
            ``[B, 1, h, w]``), ``"completeness_error"`` (``[B]``, integrated gradients and friends),
            ``"options"`` (the options used), ``"passes"`` (model calls made), ...
    """

    attributions: torch.Tensor
    method: str
    target: torch.Tensor | None = None
    layer: str | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)

    # -- drawing ---------------------------------------------------------------------------------
    def _maps(self) -> torch.Tensor:
        """One map per sample, ``[B, 1, H, W]``: channels summed as magnitudes."""
        a = self.attributions.detach()
        if a.dim() == 4:
            return a if a.shape[1] == 1 else a.abs().sum(dim=1, keepdim=True)
        if a.dim() == 3:  # [B, H, W]
            return a[:, None]
        raise ArgumentError(
            f"attributions have shape {tuple(a.shape)}, not an image-like [B, C, H, W]; token and "
            "tabular attributions [B, F] are drawn as bar charts: ex.figure(), ex.save(directory)."
        )

    def heatmaps(self, cmap: str = "jet") -> torch.Tensor:
        """The maps through a colour map: uint8 RGB ``[B, H, W, 3]`` on the attributions' device."""
        from netsight.render import heatmap

        return heatmap(self._maps()[:, 0], cmap)

    def overlay(self, images: Any, cmap: str = "jet", alpha: float = 0.5) -> torch.Tensor:
        """Blend the maps over ``images`` (``[B, C, H, W]`` or ``[B, H, W, C]``; float or uint8).

        Returns uint8 RGB ``[B, H, W, 3]``, computed in torch on the attributions' device
        (:func:`netsight.render.overlay`).
        """
        from netsight.render import overlay

        return overlay(images, self._maps(), cmap=cmap, alpha=alpha)

    def _pictures(self, images: Any = None, cmap: str = "jet") -> torch.Tensor:
        return self.heatmaps(cmap) if images is None else self.overlay(images, cmap=cmap)

    def save(
        self,
        directory: str | Path,
        images: Any = None,
        *,
        cmap: str = "jet",
        names: Sequence[str] | Sequence[Sequence[str]] | None = None,
        top: int = 12,
    ) -> list[Path]:
        """Write one PNG per sample into ``directory``: the heatmap, or its overlay on ``images``; for
        token or tabular attributions ``[B, F]``, the bar chart of :meth:`figure`."""
        from netsight.render import save_png

        out = Path(directory)
        if self._is_per_feature():
            import matplotlib.pyplot as plt

            out.mkdir(parents=True, exist_ok=True)
            paths = []
            for i in range(self.attributions.shape[0]):
                ax = self._bars(i, names, top, None)
                path = out / f"{self.method}_{i:03d}.png"
                ax.figure.savefig(path, dpi=100, bbox_inches="tight")
                plt.close(ax.figure)
                paths.append(path)
            return paths
        pics = self._pictures(images, cmap).cpu()
        return [save_png(p, out / f"{self.method}_{i:03d}.png") for i, p in enumerate(pics)]

    def _is_per_feature(self) -> bool:
        return self.attributions.dim() == 2

    def _bars(self, i: int, names: Any, top: int, ax: Any) -> Any:
        """Sample ``i``'s bar chart (:func:`netsight.render.attribution_bars`)."""
        from netsight.render import attribution_bars

        f = self.attributions.shape[1]
        if names is None:
            kind = self.meta.get("feature_kind")
            stem = "token" if kind == "tokens" else "x"
            row: Sequence[str] = [f"{stem}[{j}]" for j in range(f)]
        elif len(names) and not isinstance(names[0], str):
            row = names[i]  # one list of names per sample (tokens differ between texts)
        else:
            row = names
        title = f"{self.method}" + (f" · class {int(self.target[i])}" if self.target is not None else "")
        base = self.meta.get("base_value")
        if isinstance(base, torch.Tensor) and base.dim() == 1 and base.shape[0] > i:
            title += f" · base {float(base[i]):.3g}"
        return attribution_bars(self.attributions[i], names=row, top=top, title=title, ax=ax)

    def figure(
        self,
        images: Any = None,
        *,
        cmap: str = "jet",
        max_samples: int = 8,
        names: Sequence[str] | Sequence[Sequence[str]] | None = None,
        top: int = 12,
    ) -> Any:
        """A matplotlib Figure with one panel per sample (at most ``max_samples``).

        Maps (``[B, C, H, W]``): the heatmap, or its overlay on ``images``. Token or tabular attributions
        ``[B, F]``: a bar chart per sample of its ``top`` features by magnitude, red where a feature
        raises the score and blue where it lowers it, the rest summed in one grey bar; ``names``: one
        name per feature, or one list per sample (tokens), default ``x[j]`` / ``token[j]``.
        """
        import matplotlib.pyplot as plt

        if self._is_per_feature():
            n = min(self.attributions.shape[0], max_samples)
            rows = min(top, self.attributions.shape[1]) + 1
            fig, axes = plt.subplots(n, 1, figsize=(5.0, n * (0.3 * rows + 0.9)), squeeze=False)
            try:
                for i in range(n):
                    self._bars(i, names, top, axes[i, 0])
            except BaseException:
                plt.close(fig)  # a bad argument leaves no half-drawn figure behind
                raise
            fig.tight_layout()
            return fig
        pics = self._pictures(images, cmap)[:max_samples].cpu()
        n = pics.shape[0]
        fig, axes = plt.subplots(1, n, figsize=(2.4 * n, 2.6), squeeze=False)
        for i in range(n):
            ax = axes[0, i]
            ax.imshow(pics[i].numpy())
            ax.axis("off")
            if self.target is not None:
                ax.set_title(f"{self.method} · class {int(self.target[i])}", fontsize=8)
        fig.tight_layout()
        return fig

    def _repr_html_(self) -> str:
        from netsight.render import to_png

        if self._is_per_feature():
            return self._bars_html()
        try:
            pics = self.heatmaps()[:8].cpu()
        except ArgumentError:
            return f"<pre>{self!r}</pre>"
        imgs = "".join(
            '<img style="margin:2px;image-rendering:pixelated" width="112" '
            f'src="data:image/png;base64,{base64.b64encode(to_png(p)).decode()}"/>'
            for p in pics
        )
        where = f" at <code>{self.layer}</code>" if self.layer else ""
        return f"<div><b>{self.method}</b>{where}<br/>{imgs}</div>"

    def _bars_html(self) -> str:
        import io

        try:
            import matplotlib.pyplot as plt
        except ImportError:
            return f"<pre>{self!r}</pre>"
        fig = self.figure(max_samples=4)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
        plt.close(fig)
        src = base64.b64encode(buf.getvalue()).decode()
        return f'<div><b>{self.method}</b><br/><img src="data:image/png;base64,{src}"/></div>'

    def __repr__(self) -> str:
        tgt = "callable" if self.target is None else self.target.tolist()[:8]
        extra = sorted(k for k in self.meta if k != "options")
        return (
            f"Explanation(method={self.method!r}, attributions={tuple(self.attributions.shape)}, "
            f"target={tgt}, layer={self.layer!r}, meta={extra})"
        )
