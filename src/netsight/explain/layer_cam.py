"""Layer-CAM: activations weighted element-wise by the positive gradient.

Jiang, Zhang, Hou, Cheng, Wei (2021), "LayerCAM: Exploring Hierarchical Class Activation Maps for
Localization", IEEE TIP 30, eq. 6-7: ``L = ReLU(sum_k ReLU(dy_c/dA^k) * A^k)``, element-wise weights.
"""

from __future__ import annotations

import torch

from ._cam import cam_method


def weigh(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """sum_k ReLU(G^k) * A^k: ``[N, K, h, w]`` x2 -> ``[N, 1, h, w]``."""
    return (torch.relu(g) * a).sum(dim=1, keepdim=True)


layer_cam = cam_method(
    "layer_cam",
    weigh,
    title="Layer-CAM (Jiang et al. 2021)",
    summary="ReLU(sum_k ReLU(dy/dA_k) * A_k), element-wise",
    paper="Jiang et al. 2021, LayerCAM (IEEE TIP)",
)
