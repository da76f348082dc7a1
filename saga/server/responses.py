"""How the HTTP API answers: JSON bodies, and every error as ``{"error", "hint"}``.

400 for a body that is not JSON or text that is not UTF-8, 404 for an unknown saga or
dead letter, 413 for a body over the size limit, 415 for a body not sent as JSON, 422
for a request that does not fit its schema or names an unknown saga type, 503 when Kafka
did not take an input. Raise RequestRefused (saga/errors.py) from a route for the others.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from saga.errors import (
    CodecError,
    ConfigError,
    KafkaUnavailable,
    PayloadTooLarge,
    RequestRefused,
)


def json_response(value: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(value), status_code=status, media_type="application/json")


def raw_response(body: bytes, status: int = 200) -> Response:
    """A body that is JSON already (the index stores its answers encoded)."""
    return Response(body, status_code=status, media_type="application/json")


def error_response(status: int, error: str, hint: str | None = None,
                           details: list[dict[str, Any]] | None = None) -> Response:
    body: dict[str, Any] = {"error": error, "hint": hint}
    if details is not None:
        body["details"] = details
    return json_response(body, status)


def check_text(*values: str | None) -> None:
    """Reject text that cannot be a Kafka key or RocksDB key (lone surrogates): the
    UnicodeError becomes a 400."""
    for value in values:
        if value is not None:
            value.encode()


def install_error_handlers(app: FastAPI) -> None:
    """Every refusal and failure a route can meet, as a JSON error with a hint."""
    @app.exception_handler(RequestRefused)
    async def refused(request: Request, exc: RequestRefused) -> Response:
        return error_response(exc.status, exc.message, exc.hint)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        details = [{"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg")),
                    "type": str(e.get("type"))} for e in exc.errors()]
        if any(d["type"] == "json_invalid" for d in details):
            return error_response(400, "the body is not valid JSON",
                                  "send a JSON document with Content-Type: application/json",
                                  details)
        content_type = request.headers.get("content-type", "")
        if request.method == "POST" and "json" not in content_type \
                and any(d["loc"] == ["body"] for d in details):
            return error_response(
                415, f"the body is sent as {content_type or 'no type'!r}, not JSON",
                "send it with Content-Type: application/json", details)
        return error_response(422, "the request does not fit its schema",
                              "see /openapi.json for the fields each route takes", details)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        hint = "see /openapi.json for the routes" if exc.status_code in (404, 405) else None
        response = error_response(exc.status_code, str(exc.detail), hint)
        response.headers.update(exc.headers or {})  # a 405's Allow, for one
        return response

    @app.exception_handler(ConfigError)
    async def bad_value(request: Request, exc: ConfigError) -> Response:
        return error_response(422, exc.message, exc.hint)

    @app.exception_handler(CodecError)
    async def not_encodable(request: Request, exc: CodecError) -> Response:
        status = 413 if isinstance(exc, PayloadTooLarge) else 422
        return error_response(status, exc.message, exc.hint)

    @app.exception_handler(KafkaUnavailable)
    async def kafka_away(request: Request, exc: KafkaUnavailable) -> Response:
        # Not the caller's fault, and not a bug: the cluster did not take the input.
        return error_response(503, exc.message, exc.hint)

    @app.exception_handler(UnicodeError)
    async def not_text(request: Request, exc: UnicodeError) -> Response:
        return error_response(400, "the request holds text that is not valid UTF-8",
                              "percent-encode ids and names as UTF-8")


Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class BodyLimit:
    """413 with a JSON body for a request body over ``limit`` bytes, announced or sent."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], limit: int
                 ) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(send)
            return
        seen = 0

        async def counted() -> MutableMapping[str, Any]:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise PayloadTooLarge(f"a request body over {self.limit} bytes")
            return message

        try:
            await self.app(scope, counted, send)
        except PayloadTooLarge:
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        body = orjson.dumps({"error": f"the body is over {self.limit} bytes",
                             "hint": "pass a reference (an id, a URL) instead of the data, "
                             "or raise SAGA_MAX_PAYLOAD_BYTES"})
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
