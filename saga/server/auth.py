"""Bearer tokens for the HTTP API: a *read* role (every GET under /api/) and an
*operate* role (that, and every route that acts: start, signal, cancel, resume, abandon,
update, schedules, redrive). With no token configured the API is open, as on loopback
in development.

A plain ASGI middleware in front of the routes, so a route added later is covered by
its method alone: nothing to forget per route. Health, readiness, metrics, the OpenAPI
document and the console's static files stay open (they hold no saga data); the console
asks for a token when the API refuses it."""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from enum import Enum
from typing import Any

from saga.errors import Forbidden, Unauthenticated
from saga.server.guards import READS, refuse

_Scope = dict[str, Any]


class Role(Enum):
    READ = "read"
    OPERATE = "operate"


class Tokens:
    def __init__(self, read: Iterable[str], operate: Iterable[str]) -> None:
        self._operate = [t.encode() for t in operate if t]
        self._read = [t.encode() for t in read if t] + self._operate
        self.enabled = bool(self._read)

    def role_of(self, token: str) -> Role | None:
        given = token.encode()
        # compare_digest with every token: the time taken says nothing of which matched
        operate = any([hmac.compare_digest(given, t) for t in self._operate])
        read = any([hmac.compare_digest(given, t) for t in self._read])
        return Role.OPERATE if operate else Role.READ if read else None


def split_tokens(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


class TokenAuth:
    def __init__(self, app: Any, tokens: Tokens) -> None:
        self.app = app
        self.tokens = tokens

    async def __call__(self, scope: _Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not self.tokens.enabled \
                or not scope["path"].startswith("/api/"):
            await self.app(scope, receive, send)
            return
        needed = Role.READ if scope["method"] in READS else Role.OPERATE
        header = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
        scheme, _, token = header.partition(" ")
        role = self.tokens.role_of(token.strip()) if scheme.lower() == "bearer" else None
        if role is None:
            await refuse(scope, receive, send, Unauthenticated(
                "this API needs a bearer token" if not header else
                "the bearer token is not one this server knows"),
                headers={"www-authenticate": 'Bearer realm="kafka-saga"'})
        elif needed is Role.OPERATE and role is not Role.OPERATE:
            await refuse(scope, receive, send, Forbidden(
                f"a read token cannot {scope['method']} {scope['path']}"))
        else:
            await self.app(scope, receive, send)
