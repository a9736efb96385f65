"""netsight's demo: a small CNN trained with the monitor on, explained, and reported.

``netsight.demo.run()`` is what ``netsight demo`` runs; :class:`DemoCNN` and :func:`load` (its data) are
public so tutorials can reuse them.
"""

from ._data import DATASETS, DemoData, load
from ._model import DemoCNN
from ._run import DEFAULT_METHODS, DemoResult, run

__all__ = ["DATASETS", "DEFAULT_METHODS", "DemoCNN", "DemoData", "DemoResult", "load", "run"]
