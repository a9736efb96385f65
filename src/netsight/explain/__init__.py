"""Attribution methods behind one API: ``explain(model, x, target, method=..., layer=...)``.

Every method lives in its own file and registers itself by name (:func:`register`); this package
imports each method file below, so the registry is filled explicitly. To enrol a new method file, add
one line to ``_METHOD_MODULES``.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

from ._api import explain
from ._explanation import Explanation
from ._registry import MethodInfo, get_method, list_methods, register

__all__ = ["Explanation", "MethodInfo", "explain", "get_method", "list_methods", "register"]

# One line per method module (kept one per line so each engineer's addition is a one-line edit).
_METHOD_MODULES = (
    # gradient methods
    "saliency",
    "input_x_gradient",
    "guided_backprop",
    "deconvnet",
    "integrated_gradients",
    "layer_integrated_gradients",
    "deeplift",
    "expected_gradients",
    "smoothgrad",
    # layer (CAM) methods
    "grad_cam",
    "grad_cam_pp",
    "xgrad_cam",
    "layer_cam",
    "hires_cam",
    "score_cam",
    "ablation_cam",
    "eigen_cam",
    "guided_grad_cam",
    # perturbation methods
    "occlusion",
    "feature_ablation",
    "rise",
    "lime",
    "kernel_shap",
    # attention methods
    "attention_rollout",
    "attention_flow",
    "grad_attention",
)

for _name in _METHOD_MODULES:
    importlib.import_module(f"{__name__}.{_name}")
del _name


class _ExplainModule(types.ModuleType):
    """This package, callable as ``explain(...)``.

    Importing ``netsight.explain`` (for ``ns.list_methods``, say) binds the *package* to the name
    ``netsight.explain``, shadowing the lazily exported function; calling the package forwards to
    :func:`explain`, so ``ns.explain(model, x, ...)`` works in either order.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Explanation:
        return explain(*args, **kwargs)


sys.modules[__name__].__class__ = _ExplainModule
