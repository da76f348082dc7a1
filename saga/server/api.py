"""The HTTP API of `saga server`, on FastAPI (docs/http-api.md says why).

JSON throughout; every error is a JSON body ``{"error", "code", "hint"}`` with a 4xx
status (responses.py), and what every request passes first is in guards.py. The routes
live by what they address: saga_routes.py, schedule_routes.py, operations_routes.py
(health, metrics, timers, dead letters). Responses are written from the index's stored
JSON; the models in models.py document them in /openapi.json.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.resources import files
from typing import Any

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from saga.server import models
from saga.server.auth import TokenAuth, Tokens, split_tokens
from saga.server.guards import AllowedHosts, BodyGuard, HostCheck, RawPath
from saga.server.operations_routes import operations_routes
from saga.server.responses import install_error_handlers
from saga.server.saga_routes import saga_routes
from saga.server.schedule_routes import schedule_routes
from saga.server.visibility import Visibility

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": models.ErrorBody, "description": text}
    for code, text in ((400, "not JSON, or a Host this server does not answer to"),
                       (403, "a page of another site (Origin)"), (404, "no such saga"),
                       (413, "body too large"), (415, "not sent as JSON"),
                       (422, "does not fit the schema"),
                       (503, "too many waiting requests, or Kafka did not take it"))}


def create_app(visibility: Visibility, *, max_body_bytes: int) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        visibility.start(asyncio.get_running_loop())
        try:
            yield
        finally:
            visibility.stop()

    app = FastAPI(title="kafka-saga", version="1", lifespan=lifespan,
                  description="Start, signal, cancel and watch sagas; the index is fed by "
                  "saga.journal and saga.dlq.", responses=_ERRORS)
    settings = visibility.settings
    # Each added runs before the ones added earlier: the path as sent, then the Host and
    # Origin, then the token, then the body (JSON only where it acts, bounded).
    app.add_middleware(BodyGuard, limit=max_body_bytes)
    app.add_middleware(TokenAuth, tokens=Tokens(
        split_tokens(settings.api_read_tokens.reveal()),
        split_tokens(settings.api_operate_tokens.reveal())))
    app.add_middleware(HostCheck, allowed=AllowedHosts(settings.server_allowed_hosts,
                                                       settings.server_host))
    app.add_middleware(RawPath)
    install_error_handlers(app)
    app.include_router(operations_routes(visibility))
    app.include_router(saga_routes(visibility))
    app.include_router(schedule_routes(visibility))

    # The console: static files over this API, nothing to build. Under /console/, not
    # at the root: a mount at / matches every path, so a wrong method on an API route
    # was answered 404 by the static files instead of 405 by the route.
    app.mount("/console", StaticFiles(directory=str(files("saga.server") / "console"),
                                      html=True), name="console")

    @app.get("/", include_in_schema=False)
    async def console_home() -> RedirectResponse:
        return RedirectResponse("/console/")

    return app
