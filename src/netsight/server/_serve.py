"""``serve(...)``: run the dashboard with uvicorn, in the foreground or in a background thread."""

from __future__ import annotations

import errno
import secrets
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ArgumentError
from ._security import is_loopback_host

__all__ = ["ServerHandle", "serve"]


@dataclass
class ServerHandle:
    """A dashboard running in a background thread: ``.url`` to open, ``.stop()`` to end it."""

    url: str
    host: str
    port: int
    token: str | None
    _server: Any = field(repr=False)
    _thread: threading.Thread = field(repr=False)
    _app: Any = field(repr=False)

    @property
    def running(self) -> bool:
        """Whether the server thread is still serving."""
        return self._thread.is_alive()

    def stop(self, timeout: float = 5.0) -> None:
        """Close the event streams, stop uvicorn and wait for its thread (at most ``timeout`` s)."""
        self._app.state.closing = True
        self._server.should_exit = True
        self._thread.join(timeout)

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # accepted connections inherit it: a response's headers and body go out at once, instead of the
    # body waiting ~40 ms for the delayed ACK of the headers on a keep-alive connection (Nagle)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        if isinstance(exc, socket.gaierror) or exc.errno == errno.EADDRNOTAVAIL:  # the address, not the port
            raise ArgumentError(
                f"host: cannot listen on {host}:{port} ({exc.strerror or exc}); pass an address of this "
                "machine: 127.0.0.1 (default), or 0.0.0.0 for every interface."
            ) from exc
        raise ArgumentError(
            f"port: cannot listen on {host}:{port} ({exc.strerror or exc}); pass another --port "
            "(0 picks a free one) or stop the program that holds it."
        ) from exc
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _url(host: str, port: int, token: str | None) -> str:
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    if shown in ("0.0.0.0", "[::]"):  # noqa: S104 - only the printed address; binding is the caller's choice
        shown = socket.gethostname()
    return f"http://{shown}:{port}/" + (f"?token={token}" if token else "")


def serve(  # noqa: PLR0917 - the documented signature takes these positionally
    store_dir: str | Path = "netsight-runs",
    host: str = "127.0.0.1",
    port: int = 8765,
    token: str | None = None,
    background: bool = False,
    open_browser: bool = False,
) -> ServerHandle | None:
    """Serve the dashboard of the run store in ``store_dir`` at ``http://host:port/``.

    On a loopback ``host`` (the default) no token is needed; on any other address a token is required on
    every request: pass one, or one is generated and the URL that carries it is printed on stderr.
    ``port=0`` picks a free port. ``background=True`` returns a :class:`ServerHandle` at once (its
    ``.url``; ``.stop()`` ends it), otherwise this call blocks until interrupted and returns ``None``.
    """
    from ._app import create_app

    try:
        import uvicorn
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            f"netsight's dashboard runs on uvicorn ({exc}); install it with pip install 'netsight[server]'."
        ) from exc

    if not isinstance(port, int) or not 0 <= port <= 65535:
        raise ArgumentError(f"port: got {port!r}; pass an integer from 1 to 65535 (0 picks a free port).")
    if not host:
        raise ArgumentError("host: got an empty string; pass 127.0.0.1 (default) or an address to bind.")
    loopback = is_loopback_host(host)
    generated = False
    if token is None and not loopback:
        token = secrets.token_urlsafe(24)
        generated = True
    app = create_app(store_dir, token=token)
    sock = _bind(host, port)
    actual_port = int(sock.getsockname()[1])
    url = _url(host, actual_port, token)
    if generated or not loopback:
        sys.stderr.write(
            f"netsight dashboard: {url}\n"
            f"  bound to {host}, so every request needs the token {'generated' if generated else 'given'} "
            "above (open that URL once; the page keeps it in a cookie).\n"
        )
    else:
        sys.stderr.write(f"netsight dashboard: {url}\n")
    sys.stderr.flush()
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=1,
        lifespan="off",
    )

    class _Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            # Ctrl+C: end the pages' event streams now, or uvicorn's graceful shutdown waits for them
            # and then cancels them with a traceback
            app.state.closing = True
            super().handle_exit(sig, frame)

    server = _Server(config)
    if open_browser:
        import webbrowser

        threading.Timer(0.5, webbrowser.open, args=(url,)).start()
    if not background:
        try:
            server.run(sockets=[sock])
        finally:
            app.state.closing = True
            sock.close()
        return None

    def _run() -> None:
        try:
            server.run(sockets=[sock])
        finally:
            sock.close()

    thread = threading.Thread(target=_run, name="netsight-dashboard", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10.0
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    if not server.started:
        app.state.closing = True
        server.should_exit = True
        sock.close()
        raise ArgumentError(
            f"host/port: the dashboard did not start on {host}:{actual_port} within 10 s; "
            "check the address, or pass another port."
        )
    return ServerHandle(
        url=url, host=host, port=actual_port, token=token, _server=server, _thread=thread, _app=app
    )
