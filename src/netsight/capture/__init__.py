"""The capture core: hooks with handles, selectors, state restoration, reducers and Records.

Everything in netsight that puts a hook or a patch on a user's model goes through this package.
"""

from . import reducers
from ._capture import Capture, capture
from ._handles import HandleList
from ._hooks import Hooks
from ._selectors import glob_match, resolve, unwrap
from ._state import ModelState, hooks_on, preserved_state
from .records import Record

__all__ = [
    "Capture",
    "HandleList",
    "Hooks",
    "ModelState",
    "Record",
    "capture",
    "glob_match",
    "hooks_on",
    "preserved_state",
    "reducers",
    "resolve",
    "unwrap",
]
