"""Pictures from tensors: heatmaps, overlays, feature grids, PNG encoding (torch on the device), and bar
charts of per-feature attributions (matplotlib)."""

from ._bars import attribution_bars
from ._colormaps import apply_cmap
from ._images import as_images, feature_grid, heatmap, normalize, overlay, to_uint8
from ._png import save_png, to_png

__all__ = [
    "apply_cmap",
    "attribution_bars",
    "as_images",
    "feature_grid",
    "heatmap",
    "normalize",
    "overlay",
    "save_png",
    "to_png",
    "to_uint8",
]
