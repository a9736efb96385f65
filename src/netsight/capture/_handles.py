"""One handle type for every hook and every reversible edit of a model (STYLE.md, principle 2).

A :class:`HandleList` collects PyTorch ``RemovableHandle`` objects and undo callables alike; one
``remove()`` undoes all of them, newest first, and keeps going when one of them fails, raising the first
failure only after everything else was undone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class Removable(Protocol):
    """Anything with a ``remove()`` method: ``torch.utils.hooks.RemovableHandle`` and HandleList itself."""

    def remove(self) -> None: ...


class _Undo:
    """A reversible edit: calling ``remove()`` runs the undo function once."""

    __slots__ = ("_undo",)

    def __init__(self, undo: Callable[[], None]) -> None:
        self._undo: Callable[[], None] | None = undo

    def remove(self) -> None:
        undo, self._undo = self._undo, None
        if undo is not None:
            undo()


class HandleList:
    """A group of handles removed together, newest first. Removing twice is harmless."""

    def __init__(self) -> None:
        self._items: list[Removable] = []

    def __len__(self) -> int:
        return len(self._items)

    def add(self, handle: Removable) -> Removable:
        """Keep ``handle``; return it so a caller can also remove it early."""
        self._items.append(handle)
        return handle

    def add_undo(self, undo: Callable[[], None]) -> Removable:
        """Keep a reversible edit whose ``undo`` runs on ``remove()``."""
        return self.add(_Undo(undo))

    def remove(self) -> None:
        """Undo everything; every item is tried even if an earlier one raises."""
        first: BaseException | None = None
        while self._items:
            item = self._items.pop()
            try:
                item.remove()
            except BaseException as exc:  # noqa: BLE001 - keep undoing, re-raise the first below
                if first is None:
                    first = exc
        if first is not None:
            raise first
