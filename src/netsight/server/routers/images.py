"""Images (activation maps, explanations, ...): listings, and each PNG by its integer id.

An image is addressed by the store's integer id only, so this route cannot reach any file.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import Response

from ...errors import ArgumentError
from .. import _data
from ._common import INT64_MAX, Access, RunName

router = APIRouter(prefix="/api", tags=["images"])

Text = Annotated[str | None, Query(max_length=1000)]
_PNG = b"\x89PNG\r\n\x1a\n"


@router.get("/images")
def list_images(
    *,
    access: Access,
    run: RunName,
    kind: Text = None,
    key: Text = None,
    layer: Text = None,
    filter: Text = None,  # noqa: A002
) -> dict[str, Any]:
    """The run's images (of one kind, key or layer; ``filter``: globs on the layer, else the key)."""
    r = access.run(run)
    infos = list(r.images(kind=kind, key=key, layer=layer))
    if filter:
        labels = [i.layer if i.layer else i.key for i in infos]
        keep = set(_data.filter_layers(labels, filter))
        infos = [i for i, label in zip(infos, labels) if label in keep]
    return {
        "images": [
            {
                "id": int(i.id),
                "step": _data.jsonable(i.step),
                "key": i.key,
                "layer": i.layer,
                "kind": i.kind,
                "meta": _data.jsonable(i.meta or {}),
            }
            for i in infos
        ]
    }


@router.get("/image")
def image(access: Access, run: RunName, id: Annotated[int, Query(ge=0, le=INT64_MAX)]) -> Response:  # noqa: A002
    """One image's PNG bytes."""
    r = access.run(run)
    try:
        data = r.image(id)
    except (LookupError, ArgumentError) as exc:
        raise HTTPException(status_code=404, detail=f"id: run {run!r} has no image {id}.") from exc
    if not bytes(data[:8]) == _PNG:
        raise HTTPException(status_code=500, detail=f"image {id} of run {run!r} is not a PNG in the store.")
    return Response(
        content=bytes(data),
        media_type="image/png",
        headers={"Cache-Control": "private, max-age=86400"},
    )
