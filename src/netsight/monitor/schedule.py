"""When to look: every ``n`` steps, or on a logarithmic schedule (dense early, sparse later).

``ns.watch(every=1, heavy="log")``: cheap scalars every ``every`` steps; heavy items (histograms,
activation maps of the probe batch) on :class:`LogSchedule`. A schedule is any ``step -> bool``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import ArgumentError

__all__ = ["Every", "LogSchedule", "Never", "Schedule", "as_schedule"]

Schedule = Callable[[int], bool]


@dataclass(frozen=True)
class Every:
    """True on steps ``0, n, 2n, ...``."""

    n: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.n, int) or self.n < 1:
            raise ArgumentError(
                f"every: expected a positive int (steps), got {self.n!r}. Pass e.g. every=10."
            )

    def __call__(self, step: int) -> bool:
        return step % self.n == 0


@dataclass(frozen=True)
class Never:
    """Never true (turns a heavy item off)."""

    def __call__(self, step: int) -> bool:
        return False


@dataclass(frozen=True)
class LogSchedule:
    """Every step below ``dense``, then about ``per_decade`` steps per decade, at least every ``max_gap``.

    With the defaults: 0-9, 10, 12, 15, 19, 25, 31, 39, 50, 63, 79, 100, 125, ... 1000, 1258, ...
    (steps ``round(10 ** (k / per_decade))``), and every 10,000th step after that gap is reached.
    """

    dense: int = 10
    per_decade: int = 10
    max_gap: int = 10_000

    def __post_init__(self) -> None:
        if self.dense < 0 or self.per_decade < 1 or self.max_gap < 1:
            raise ArgumentError(
                f"LogSchedule: need dense >= 0, per_decade >= 1, max_gap >= 1; got dense={self.dense}, "
                f"per_decade={self.per_decade}, max_gap={self.max_gap}."
            )

    def __call__(self, step: int) -> bool:
        if step < self.dense:
            return True
        if step % self.max_gap == 0:
            return True
        k = round(math.log10(step) * self.per_decade) if step > 0 else 0
        return any(round(10 ** (j / self.per_decade)) == step for j in (k - 1, k, k + 1))


def as_schedule(spec: object, argument: str) -> Schedule:
    """A schedule from an int (every n), ``"log"``, ``"always"``, ``"never"`` (or None/False), a callable."""
    if spec is None or spec is False or spec == "never":
        return Never()
    if spec is True or spec == "always":
        return Every(1)
    if spec == "log":
        return LogSchedule()
    if isinstance(spec, int):
        if spec < 1:
            raise ArgumentError(f"{argument}: expected a positive int (steps), got {spec!r}.")
        return Every(spec)
    if callable(spec):
        return spec
    raise ArgumentError(
        f"{argument}: cannot use {spec!r} as a schedule. Pass an int (every n steps), 'log', 'always', "
        "'never', or a callable step -> bool."
    )
