"""netsight's demo: a small CNN trained with the monitor on, explained, and reported.

``netsight.demo.run()`` is what ``netsight demo`` runs; :class:`DemoCNN` and :func:`load` (its data) are
public so tutorials can reuse them.
"""

from ._data import DATASETS, DemoData, load
from ._model import DemoCNN
from ._run import CAM_LAYER, DEFAULT_METHODS, MAP_LAYERS, DemoResult, run

__all__ = [
    "CAM_LAYER",
    "DATASETS",
    "DEFAULT_METHODS",
    "MAP_LAYERS",
    "DemoCNN",
    "DemoData",
    "DemoResult",
    "load",
    "run",
]
