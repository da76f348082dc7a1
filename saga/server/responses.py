"""How the HTTP API answers: JSON bodies, and every error as ``{"error", "code",
"hint"}`` (plus ``details`` per field for a schema mismatch).

The status and the code of an error come from one table, saga.errors.HTTP_ERRORS: a
route raises the SagaError that says what went wrong (SagaNotFound, ScheduleNotFound,
UnknownSagaType...) and the handlers here turn it into its row; what FastAPI and
Starlette raise themselves (schema mismatches, unknown routes, wrong methods) is first
mapped onto one of those classes. The middlewares in guards.py answer through
``send_error``, the same rendering.
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
    BadRequest,
    InvalidRequest,
    MethodNotAllowed,
    NoSuchRoute,
    SagaError,
    ServerBusy,
    http_error,
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def json_response(value: Any, status: int = 200, headers: dict[str, str] | None = None
                  ) -> Response:
    return Response(orjson.dumps(value), status_code=status, media_type="application/json",
                    headers=headers)


def raw_response(body: bytes, status: int = 200, headers: dict[str, str] | None = None
                 ) -> Response:
    """A body that is JSON already (the index stores its answers encoded)."""
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def error_body(error: SagaError, details: list[dict[str, Any]] | None = None
               ) -> tuple[int, bytes, dict[str, str]]:
    """The status, JSON body and extra headers an error is answered with."""
    status, code = http_error(error)
    body: dict[str, Any] = {"error": error.message, "code": code.value, "hint": error.hint}
    if details is not None:
        body["details"] = details
    headers = {"retry-after": "1"} if isinstance(error, ServerBusy) else {}
    return status, orjson.dumps(body), headers


def error_response(error: SagaError, details: list[dict[str, Any]] | None = None
                   ) -> Response:
    status, body, headers = error_body(error, details)
    return raw_response(body, status, headers)


async def send_error(send: Send, error: SagaError, *, headers: dict[str, str] | None = None
                     ) -> None:
    """Answer with ``error`` from a plain ASGI middleware (before any route runs)."""
    status, body, extra = error_body(error)
    raw = [(b"content-type", b"application/json"),
           (b"content-length", str(len(body)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in {**extra, **(headers or {})}.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def check_text(*values: str | None) -> None:
    """Reject text that cannot be a Kafka key or RocksDB key (lone surrogates): the
    UnicodeError becomes a 400."""
    for value in values:
        if value is not None:
            value.encode()


def install_error_handlers(app: FastAPI) -> None:
    """Every refusal and failure a route can meet, as a JSON error with its code."""
    @app.exception_handler(SagaError)
    async def refused(request: Request, exc: SagaError) -> Response:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        details = [{"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg")),
                    "type": str(e.get("type"))} for e in exc.errors()]
        if any(d["type"] == "json_invalid" for d in details):
            return error_response(BadRequest("the body is not valid JSON"), details)
        if any(d["loc"] == ["body"] and d["type"] == "missing" for d in details):
            return error_response(BadRequest("this route needs a JSON body"), details)
        return error_response(InvalidRequest("the request does not fit its schema"), details)

    @app.exception_handler(StarletteHTTPException)
    async def http_error_(request: Request, exc: StarletteHTTPException) -> Response:
        error: SagaError
        if exc.status_code == 404:
            error = NoSuchRoute(f"no route {request.method} {request.url.path}")
        elif exc.status_code == 405:
            error = MethodNotAllowed(f"{request.url.path} does not take {request.method}")
        else:  # FastAPI's 400 for a body it could not read; nothing else raises these
            error = BadRequest(str(exc.detail))
        response = error_response(error)
        response.headers.update(exc.headers or {})  # a 405's Allow, for one
        return response

    @app.exception_handler(UnicodeError)
    async def not_text(request: Request, exc: UnicodeError) -> Response:
        return error_response(BadRequest("the request holds text that is not valid UTF-8",
                                         hint="percent-encode ids and names as UTF-8"))

    @app.exception_handler(Exception)
    async def failed(request: Request, exc: Exception) -> Response:
        # A bug, not the caller's doing: said as JSON like every other answer (Starlette
        # raises it on after this answer, and uvicorn logs the traceback).
        return error_response(SagaError(f"the server failed on this request: "
                                        f"{type(exc).__name__}",
                                        hint="a bug: the server's log has the traceback"))
