"""Request guards of the dashboard: loopback ``Host`` check, token check, security headers.

A pure ASGI middleware (it must not buffer the server-sent event stream). Rules:

- Only ``GET`` and ``HEAD`` reach the application: the API is read-only (anything else is 405).
- Without a token the server is bound to a loopback address, and a request must name a loopback host
  (``127.0.0.1``, ``localhost``, ``[::1]``) in its ``Host`` header, so that a web page on another
  origin cannot reach it by DNS rebinding.
- With a token, every request must carry it: ``Authorization: Bearer <token>``, the ``X-Netsight-Token``
  header, the ``token`` query parameter, or the ``netsight_token`` cookie. The first page opened with
  ``?token=...`` sets that cookie (HttpOnly, SameSite=Strict), so that the page's own requests, the
  event stream and the images carry it. Tokens are compared in constant time.
- Every response carries ``Server-Timing: app;dur=<ms>`` (time to its first byte, shown by the
  browser's developer tools), ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: no-referrer`` and a
  Content-Security-Policy: scripts only from this server, no inline script, no plugins. Routes that
  set their own policy (the sandboxed attention pages) keep it.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import parse_qs

__all__ = ["APP_CSP", "COOKIE", "SecurityMiddleware", "is_loopback_host"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

COOKIE = "netsight_token"
APP_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
    "connect-src 'self'; frame-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'self'"
)
_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` (a name or address, without port) is this machine's loopback interface."""
    import ipaddress

    name = host.strip().strip("[]").lower()
    if name in _LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _host_without_port(value: str) -> str:
    value = value.strip()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class SecurityMiddleware:
    """Guards every HTTP request to ``app`` (see the module docstring for the rules)."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if scope["method"] not in ("GET", "HEAD"):
            await _plain(send, 405, "netsight's dashboard is read-only: only GET and HEAD are allowed.")
            return
        set_cookie = False
        if self.token is None:
            host = _host_without_port(headers.get("host", ""))
            if not is_loopback_host(host):
                await _plain(
                    send,
                    403,
                    "This dashboard answers loopback hosts only (open it as http://127.0.0.1:PORT/); "
                    "serve it with a token to reach it under another name.",
                )
                return
        else:
            given, from_query = self._given_token(scope, headers)
            if given is None or not secrets.compare_digest(given.encode(), self.token.encode()):
                await _plain(
                    send,
                    401,
                    "This dashboard needs its token: open the URL printed at start (it ends in ?token=...), "
                    "or send the header 'Authorization: Bearer <token>'.",
                )
                return
            set_cookie = from_query

        started = time.perf_counter()

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                raw = list(message.get("headers", []))
                spent = (time.perf_counter() - started) * 1000
                raw.append((b"server-timing", f"app;dur={spent:.1f}".encode()))
                names = {k.lower() for k, _ in raw}
                raw.append((b"x-content-type-options", b"nosniff"))
                raw.append((b"referrer-policy", b"no-referrer"))
                if b"content-security-policy" not in names:
                    raw.append((b"content-security-policy", APP_CSP.encode()))
                if b"x-frame-options" not in names:
                    raw.append((b"x-frame-options", b"SAMEORIGIN"))
                if set_cookie and self.token is not None:
                    cookie = f"{COOKIE}={self.token}; Path=/; HttpOnly; SameSite=Strict"
                    raw.append((b"set-cookie", cookie.encode("latin-1")))
                message["headers"] = raw
            await send(message)

        await self.app(scope, receive, send_with_headers)

    @staticmethod
    def _given_token(scope: Scope, headers: dict[str, str]) -> tuple[str | None, bool]:
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            return auth[7:].strip(), False
        if "x-netsight-token" in headers:
            return headers["x-netsight-token"].strip(), False
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if query.get("token"):
            return query["token"][0], True
        if "cookie" in headers:
            jar: SimpleCookie = SimpleCookie()
            try:
                jar.load(headers["cookie"])
            except CookieError:  # a malformed cookie header carries no token
                return None, False
            if COOKIE in jar:
                return jar[COOKIE].value, False
        return None, False


async def _plain(send: Send, status: int, text: str) -> None:
    body = text.encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                (b"x-content-type-options", b"nosniff"),
                (b"content-security-policy", b"default-src 'none'"),
                *([(b"allow", b"GET, HEAD")] if status == 405 else []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
