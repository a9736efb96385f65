"""One router per resource of the dashboard's read-only API (every route is GET)."""

from fastapi import APIRouter

from . import alerts, events, histograms, images, layers, runs, scalars, static, texts, tree

ALL: tuple[APIRouter, ...] = (
    runs.router,
    scalars.router,
    layers.router,
    histograms.router,
    images.router,
    alerts.router,
    tree.router,
    texts.router,
    events.router,
    static.router,
)

__all__ = ["ALL"]
