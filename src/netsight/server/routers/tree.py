"""The model's module tree (names, types, parents, parameter counts, output shapes, execution order)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from .. import _data
from ._common import Access, RunName

router = APIRouter(prefix="/api", tags=["tree"])


@router.get("/tree")
def module_tree(access: Access, run: RunName) -> dict[str, Any]:
    """``{nodes: [{name, type, parent, params, out_shape, order}]}``; the root's name is ``""``."""
    r = access.run(run)
    return {"nodes": [_data.jsonable(n) for n in r.module_tree()]}
