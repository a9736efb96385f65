"""The public surface is small and pinned (STYLE.md, principle 10): a change here is a decision."""

from __future__ import annotations

import subprocess
import sys

import pytest

import netsight as ns
from netsight import errors

PUBLIC = [
    "Alert",
    "AttentionMaps",
    "Capture",
    "Explanation",
    "Hooks",
    "Monitor",
    "Record",
    "__version__",
    "attention",
    "capture",
    "errors",
    "explain",
    "get_method",
    "hooks_on",
    "list_methods",
    "open_run",
    "reducers",
    "render",
    "serve",
    "store",
    "watch",
]


def test_all_is_pinned_and_sorted() -> None:
    assert ns.__all__ == PUBLIC
    assert sorted(ns.__all__, key=str.lower) == sorted(PUBLIC, key=str.lower)


def test_every_public_name_resolves() -> None:
    for name in ns.__all__:
        assert getattr(ns, name) is not None, name


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="not_a_thing"):
        ns.not_a_thing  # noqa: B018


def test_errors_share_one_base_and_their_builtin_kinds() -> None:
    for name in errors.__all__:
        obj = getattr(errors, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, (errors.NetsightError, errors.NetsightWarning)), name
    assert issubclass(errors.SelectorError, LookupError)
    assert issubclass(errors.ArgumentError, ValueError)
    assert issubclass(errors.CaptureError, RuntimeError)


def test_import_is_light() -> None:
    """Importing netsight must not pull the heavy optional stacks (lazy imports, principle 9)."""
    code = (
        "import sys, netsight; heavy = [m for m in ('matplotlib', 'fastapi', 'transformers', "
        "'skimage', 'sklearn', 'plotly', 'uvicorn', 'typer') if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_functions_stay_callable_after_importing_their_packages() -> None:
    """``ns.explain``/``ns.attention`` work even after ``from netsight.explain import ...``."""
    code = (
        "from netsight.explain import Explanation; from netsight.attention import AttentionMaps; "
        "import netsight as ns; import torch; "
        "m = torch.nn.Sequential(torch.nn.Linear(3, 2)); "
        "ex = ns.explain(m, torch.randn(2, 3), target=0, method='saliency'); "
        "print(type(ex).__name__, callable(ns.attention), callable(ns.capture))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["Explanation", "True", "True"], out.stdout + out.stderr
