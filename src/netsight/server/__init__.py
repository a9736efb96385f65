"""netsight's dashboard: a read-only FastAPI application over the run store, and its static front-end.

``create_app(store_dir)`` builds the application (one router per resource in :mod:`.routers`, the
front-end in ``static/``, plotly.js from the installed ``plotly`` package: nothing is fetched from the
network). ``serve(...)`` runs it with uvicorn, in the foreground or in a background thread.

Security: it binds ``127.0.0.1`` by default and then only answers requests whose ``Host`` is a loopback
name (no DNS rebinding); binding any other address requires a token on every request (given, or generated
and printed at start). Every route is ``GET``; every user string is shown as text, never as markup.
The server reads the store through :mod:`netsight.store`'s reader API only and never imports torch while
answering a request.
"""

from ._app import create_app
from ._serve import ServerHandle, serve

__all__ = ["ServerHandle", "create_app", "serve"]
