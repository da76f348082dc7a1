"""What every request passes before a route sees it, as plain ASGI middlewares (a route
added later is covered without a line of its own):

- ``RawPath``: routes match the path as sent, still percent-encoded, and each path
  parameter is decoded once, by the ``segment`` convertor. Decoding the whole path
  first, as servers do, turned ``/api/sagas/x%2Fcancel`` into the cancel route of saga
  ``x``; now it is saga ``x/cancel``, as the caller meant.
- ``HostCheck``: the Host must be one the server answers to (SAGA_SERVER_ALLOWED_HOSTS),
  and a browser's Origin too, and a request a browser marks as made for a page of
  another site (``Sec-Fetch-Site``) is refused unless it is a person following a link:
  a page of another site, or one that rebinds its own name to 127.0.0.1 (DNS
  rebinding), is refused before anything is read or done. Health, readiness and metrics
  stay open to any Host (probes and scrapers call addresses).
- ``BodyGuard``: every body is read whole, up to the size limit, before a route runs; a
  larger one is read on to a bound and answered 413, so the client reads the answer
  instead of a reset connection.

And one route class, ``JsonBodyRoute``: a route that acts (any method but GET, HEAD,
OPTIONS) takes only a JSON body, ``Content-Type: application/json`` and a document
(``{}`` at least). An HTML form on another site can send neither without the browser
asking the server first (a CORS preflight, which this server never grants). A route
class rather than a middleware so that an unknown path or method is still a 404 or a
405; every router of the API is made with it, so a route added later is covered.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Coroutine, Iterable
from typing import Any
from urllib.parse import quote, quote_from_bytes, unquote, urlsplit

from fastapi import Request
from fastapi.responses import Response
from fastapi.routing import APIRoute
from starlette.convertors import Convertor, register_url_convertor

from saga.errors import (
    BadRequest,
    HostNotAllowed,
    OriginNotAllowed,
    PayloadTooLarge,
    SagaError,
    UnsupportedMediaType,
)
from saga.server.responses import Message, Receive, Scope, Send, send_error

App = Any
#: Methods that only read; every other method under /api/ acts.
READS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Open to any Host: probes and scrapers call an address, not a name.
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
#: What a path keeps as it is when re-encoding the bytes of a request line: the
#: characters RFC 3986 allows in a path, and escapes already made.
_PATH_SAFE = "/%!$&'()*+,;=:@-._~"
_LOOPBACK = ("localhost", "127.0.0.1", "::1")


class Segment(Convertor[str]):
    """One path segment, percent-decoded exactly once (UTF-8, strictly: a bad byte is a
    UnicodeDecodeError, answered 400)."""

    regex = "[^/]+"

    def convert(self, value: str) -> str:
        return unquote(value, errors="strict")

    def to_string(self, value: str) -> str:
        return quote(value, safe="")


register_url_convertor("segment", Segment())


class RawPath:
    """Routing on the path as sent (see the module's docstring)."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = scope.get("raw_path")
        if scope["type"] in ("http", "websocket") and raw:
            # Bytes a client sent unescaped (a space, UTF-8) are escaped as a browser
            # would have; the escapes already there stay as they are.
            scope = {**scope, "path": quote_from_bytes(bytes(raw), safe=_PATH_SAFE)}
        await self.app(scope, receive, send)


class AllowedHosts:
    """The names the server answers to; None: any (``*``)."""

    def __init__(self, configured: str, bound_host: str) -> None:
        names = [n.strip() for n in configured.split(",") if n.strip()]
        if "*" in names:
            self.names: frozenset[str] | None = None
            return
        if not names:
            names = [*_LOOPBACK, bound_host]
            if bound_host in ("0.0.0.0", "::", ""):  # every address: the machine's name
                names += [socket.gethostname(), socket.getfqdn()]
        self.names = frozenset(_normal(n) for n in names if n not in ("0.0.0.0", "::", ""))

    def allows(self, host: str | None) -> bool:
        return self.names is None or (host is not None and _normal(host) in self.names)

    def __repr__(self) -> str:
        return "*" if self.names is None else ",".join(sorted(self.names))


def _normal(host: str) -> str:
    """A name as compared: lower case, no trailing dot, no brackets, no port (a listed
    ``name:8443`` still names ``name``)."""
    name = host.strip().lower()
    if name.startswith("["):
        name = name[1:].partition("]")[0]
    elif name.count(":") == 1:
        name = name.partition(":")[0]
    return name.rstrip(".")


def host_of(header: str) -> str | None:
    """The host of a Host header (``name``, ``name:port``, ``[v6]:port``)."""
    if not header:
        return None
    try:
        return urlsplit(f"//{header}").hostname
    except ValueError:
        return None


def origin_host(origin: str) -> str | None:
    """The host an Origin header names (None for ``null`` and anything malformed)."""
    try:
        parts = urlsplit(origin)
    except ValueError:
        return None
    return parts.hostname if parts.scheme in ("http", "https") else None


class HostCheck:
    def __init__(self, app: App, allowed: AllowedHosts) -> None:
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        host_header = headers.get(b"host", b"").decode("latin-1")
        host = host_of(host_header)
        if not self.allowed.allows(host):
            await refuse(scope, receive, send, HostNotAllowed(
                f"this server does not answer to the host {host_header!r}"))
            return
        site = headers.get(b"sec-fetch-site", b"").lower()
        if site in (b"cross-site", b"same-site") and not _navigation(scope, headers):
            # What a browser says of a request it makes for a page of another site
            # (Fetch Metadata): an <img> or a form's target, that sends no Origin.
            await refuse(scope, receive, send, OriginNotAllowed(
                f"a request a browser made for a page of another site (Sec-Fetch-Site: "
                f"{site.decode('latin-1')})"))
            return
        origin = headers.get(b"origin")
        if origin is not None:
            named = origin.decode("latin-1")
            if not self.allowed.allows(origin_host(named)):
                await refuse(scope, receive, send, OriginNotAllowed(
                    f"a request from a page of {named!r}, a site this server does not "
                    "answer to"))
                return
        await self.app(scope, receive, send)


def _navigation(scope: Scope, headers: dict[bytes, bytes]) -> bool:
    """A person following a link to the server (the console, a saga's JSON): a GET that
    opens a page, never one embedded in another site's page."""
    return (scope["method"] == "GET"
            and headers.get(b"sec-fetch-mode", b"").lower() == b"navigate"
            and headers.get(b"sec-fetch-dest", b"document").lower() in (b"document", b""))


class BodyGuard:
    """No body over ``limit`` bytes (see the module's docstring). A body over the limit
    is read on, and dropped, up to ``drain_limit`` bytes so that the client gets to read
    the 413; past that the connection is closed after the answer."""

    def __init__(self, app: App, limit: int, drain_limit: int | None = None) -> None:
        self.app = app
        self.limit = limit
        self.drain_limit = drain_limit if drain_limit is not None \
            else max(4 * limit, 16 * 1024 * 1024)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _headers(scope).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            await refuse(scope, receive, send, self._too_large(),
                         drain_limit=self.drain_limit)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await refuse(scope, receive, send, self._too_large(),
                             drain_limit=self.drain_limit - size,
                             more=message.get("more_body", False))
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()  # what comes after the body: a disconnect
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(f"the body is over {self.limit} bytes",
                               hint="pass a reference (an id, a URL) instead of the data, "
                               "or raise SAGA_MAX_PAYLOAD_BYTES on the server")


async def refuse(scope: Scope, receive: Receive, send: Send, error: SagaError, *,
                 drain_limit: int = 16 * 1024 * 1024, more: bool | None = None,
                 headers: dict[str, str] | None = None) -> None:
    """Answer ``error`` to a request whose body is not wanted: the body is read and
    dropped first, up to ``drain_limit`` bytes, so the client, still sending, reads the
    answer instead of a reset connection; past the bound (or when the client waits
    for a 100 Continue, and so sends nothing) the connection closes after it."""
    held = _headers(scope)
    if more is None:
        declared = held.get(b"content-length", b"0")
        more = (not declared.isdigit() or int(declared) > 0
                or b"chunked" in held.get(b"transfer-encoding", b"").lower())
    drained = not more or b"100-continue" in held.get(b"expect", b"").lower()
    if not drained:
        declared = held.get(b"content-length", b"")
        if not (declared.isdigit() and int(declared) > drain_limit):
            drained = await _drain(receive, drain_limit)
    extra = dict(headers or {})
    if not drained:
        extra["connection"] = "close"
    await send_error(send, error, headers=extra)


async def _drain(receive: Receive, limit: int) -> bool:
    """Read the rest of the body, dropping it; whether it all came within ``limit``."""
    read = 0
    while read <= limit:
        message = await receive()
        if message["type"] == "http.disconnect":
            return False
        read += len(message.get("body", b""))
        if not message.get("more_body", False):
            return True
    return False


def _headers(scope: Scope) -> dict[bytes, bytes]:
    held: Iterable[tuple[bytes, bytes]] = scope.get("headers") or []
    return {k.lower(): v for k, v in held}


def _media_type(content_type: bytes | None) -> str:
    if not content_type:
        return ""
    return content_type.split(b";", 1)[0].strip().lower().decode("latin-1")


Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class JsonBodyRoute(APIRoute):
    """A route that, when it acts, takes only a JSON document (see the module's
    docstring); checked before FastAPI reads the body into the route's model."""

    def get_route_handler(self) -> Handler:
        handler = super().get_route_handler()
        if (self.methods or set()) <= READS:
            return handler

        async def json_only(request: Request) -> Response:
            said = request.headers.get("content-type")
            if _media_type(said.encode("latin-1") if said else None) != "application/json":
                raise UnsupportedMediaType(f"{request.method} {request.url.path} takes a "
                                           f"JSON body; this one is sent as "
                                           f"{said or 'no type'!r}")
            if not (await request.body()).strip():
                raise BadRequest(f"{request.method} {request.url.path} takes a JSON body "
                                 "and this one is empty")
            return await handler(request)

        return json_only
