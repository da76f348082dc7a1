"""The HTTP API of `saga server`, on FastAPI (docs/http-api.md says why).

JSON throughout. Every error is a JSON body ``{"error", "hint"}`` with a 4xx status:
400 for a body that is not JSON, 404 for an unknown saga or dead letter, 413 for a body
over the size limit, 422 for a request that does not fit its schema or names an
unknown saga type. Responses are written from the index's stored JSON; the models in
models.py document them in /openapi.json.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import replace
from importlib.resources import files
from typing import Annotated, Any, Literal

import orjson
from fastapi import FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from saga.engine.inputs import (
    AbandonSaga,
    CancelSaga,
    DeliverSignal,
    Input,
    ResumeSaga,
    UpdateSaga,
)
from saga.engine.lifecycle import SagaStatus
from saga.engine.schedule import (
    CONTROL_SIGNAL,
    SCHEDULE_TYPE,
    Control,
    ScheduleSpec,
    schedule_saga_id,
)
from saga.errors import (
    CodecError,
    ConfigError,
    KafkaUnavailable,
    PayloadTooLarge,
    RequestRefused,
)
from saga.kafka.dead_letters import from_json, public, redrive
from saga.server import models
from saga.server.auth import TokenAuth, Tokens, split_tokens
from saga.server.visibility import Visibility
from saga.store.visibility import ListQuery, parse_attributes
from saga.telemetry import metrics

log = logging.getLogger("saga.server")
SagaId = Annotated[str, Path(min_length=1, max_length=models.MAX_ID,
                             description="the saga id")]
Millis = Annotated[int | None, Query(ge=0, le=10**15, description="epoch milliseconds")]
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": models.ErrorBody, "description": text}
    for code, text in ((400, "not JSON"), (404, "no such saga"), (413, "body too large"),
                       (415, "not sent as JSON"), (422, "does not fit the schema"))}


def _json(value: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(value), status_code=status, media_type="application/json")


def _raw(body: bytes, status: int = 200) -> Response:
    return Response(body, status_code=status, media_type="application/json")


def _error(status: int, error: str, hint: str | None = None,
           details: list[dict[str, Any]] | None = None) -> Response:
    body: dict[str, Any] = {"error": error, "hint": hint}
    if details is not None:
        body["details"] = details
    return _json(body, status)


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
    index = visibility.index
    app.add_middleware(_BodyLimit, limit=max_body_bytes)
    settings = visibility.settings
    # Added last, so it runs first: a refused caller's body is never read.
    app.add_middleware(TokenAuth, tokens=Tokens(
        split_tokens(settings.api_read_tokens.reveal()),
        split_tokens(settings.api_operate_tokens.reveal())))

    def summary_or_404(saga_id: str) -> dict[str, Any]:
        summary = index.summary(saga_id)
        if summary is None:
            raise RequestRefused(404, f"no saga {saga_id!r}", "check the id (GET /api/sagas); a "
                           "saga started a moment ago appears within about a second")
        return summary

    # ---- errors ----------------------------------------------------------------------
    @app.exception_handler(RequestRefused)
    async def refused(request: Request, exc: RequestRefused) -> Response:
        return _error(exc.status, exc.message, exc.hint)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        details = [{"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg")),
                    "type": str(e.get("type"))} for e in exc.errors()]
        if any(d["type"] == "json_invalid" for d in details):
            return _error(400, "the body is not valid JSON",
                          "send a JSON document with Content-Type: application/json",
                          details)
        content_type = request.headers.get("content-type", "")
        if request.method == "POST" and "json" not in content_type \
                and any(d["loc"] == ["body"] for d in details):
            return _error(415, f"the body is sent as {content_type or 'no type'!r}, not JSON",
                          "send it with Content-Type: application/json", details)
        return _error(422, "the request does not fit its schema",
                      "see /openapi.json for the fields each route takes", details)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        hint = "see /openapi.json for the routes" if exc.status_code in (404, 405) else None
        response = _error(exc.status_code, str(exc.detail), hint)
        response.headers.update(exc.headers or {})  # a 405's Allow, for one
        return response

    @app.exception_handler(ConfigError)
    async def bad_value(request: Request, exc: ConfigError) -> Response:
        return _error(422, exc.message, exc.hint)

    @app.exception_handler(CodecError)
    async def not_encodable(request: Request, exc: CodecError) -> Response:
        status = 413 if isinstance(exc, PayloadTooLarge) else 422
        return _error(status, exc.message, exc.hint)

    @app.exception_handler(KafkaUnavailable)
    async def kafka_away(request: Request, exc: KafkaUnavailable) -> Response:
        # Not the caller's fault, and not a bug: the cluster did not take the input.
        return _error(503, exc.message, exc.hint)

    @app.exception_handler(UnicodeError)
    async def not_text(request: Request, exc: UnicodeError) -> Response:
        return _error(400, "the request holds text that is not valid UTF-8",
                      "percent-encode ids and names as UTF-8")

    # ---- health ----------------------------------------------------------------------
    @app.get("/healthz", response_model=models.Health, tags=["health"])
    async def healthz() -> Response:
        failed = visibility.feed.status.failed
        return _json({"status": "failed" if failed else "ok", "feed_error": failed})

    @app.get("/readyz", response_model=models.Readiness, tags=["health"],
             responses={503: {"model": models.Readiness, "description": "catching up"}})
    async def readyz() -> Response:
        status = visibility.feed.status
        ready = status.ready and status.failed is None
        return _json({"ready": ready, "lag": status.lag, "entries_indexed": status.entries,
                      "hint": None if ready else status.failed or "catching up with "
                      "saga.journal"}, 200 if ready else 503)

    @app.get("/metrics", tags=["health"], response_class=Response,
             responses={200: {"content": {"text/plain": {}},
                              "description": "Prometheus text format"}})
    async def prometheus() -> Response:
        for status, count in index.counts().items():
            metrics.SAGAS.labels(status).set(count)
        for topic, lag in visibility.feed.status.lag.items():
            metrics.INDEX_LAG.labels(topic).set(lag)
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    # ---- sagas -----------------------------------------------------------------------
    @app.post("/api/sagas", response_model=models.StartResponse, status_code=201,
              tags=["sagas"], responses={200: {"model": models.StartResponse,
                                               "description": "it was there already"},
                                         202: {"model": models.StartResponse,
                                               "description": "sent; not visible yet"}})
    async def start(body: models.StartRequest) -> Response:
        if visibility.known_types and body.type not in visibility.known_types:
            raise RequestRefused(422, f"no workflow named {body.type!r}",
                           f"known: {', '.join(visibility.known_types)}")
        _check_text(body.id)
        started = await visibility.start_saga(body.id, body.type, body.input)
        if started.created is None:
            return _json({"saga_id": body.id, "created": None, "status": None,
                          "hint": "sent to saga.inbox; no coordinator has started it yet "
                          "(is one running?)"}, 202)
        return _json({"saga_id": body.id, "created": started.created,
                      "status": started.status, "hint": None},
                     201 if started.created else 200)

    @app.get("/api/sagas", response_model=models.SagaPage, tags=["sagas"])
    async def list_sagas(
            status: Annotated[SagaStatus | None, Query()] = None,
            type: Annotated[str | None, Query(max_length=200)] = None,
            id_prefix: Annotated[str | None, Query(max_length=models.MAX_ID)] = None,
            started_after: Millis = None, started_before: Millis = None,
            ended_after: Millis = None, ended_before: Millis = None,
            limit: Annotated[int, Query(ge=1, le=1000)] = 100,
            cursor: Annotated[str | None, Query(max_length=2000)] = None,
            version: Annotated[int | None, Query(ge=0, le=10**9)] = None,
            attribute: Annotated[list[str] | None, Query(
                max_length=20, description="KEY=VALUE (VALUE read as JSON when it is), "
                "repeatable: each must match")] = None) -> Response:
        for text in (type, id_prefix, cursor, *(attribute or [])):
            _check_text(text)
        page = index.page(ListQuery(status, type, id_prefix, started_after, started_before,
                                    ended_after, ended_before, limit, cursor, version,
                                    parse_attributes(attribute, named="attribute")))
        return _json({"sagas": page.sagas, "next_cursor": page.next_cursor})

    @app.get("/api/sagas/{saga_id}", response_model=models.SagaSummary, tags=["sagas"])
    async def get_saga(saga_id: SagaId) -> Response:
        _check_text(saga_id)
        raw = index.summary_json(saga_id)
        if raw is None:
            summary_or_404(saga_id)
        assert raw is not None
        return _raw(raw)

    @app.get("/api/sagas/{saga_id}/history", response_model=list[models.HistoryEntry],
             tags=["sagas"])
    async def history(saga_id: SagaId) -> Response:
        _check_text(saga_id)
        rows = index.history_json(saga_id)
        if not rows:
            summary_or_404(saga_id)
        return _raw(b"[" + b",".join(rows) + b"]")

    @app.get("/api/sagas/{saga_id}/result", response_model=models.SagaResult, tags=["sagas"])
    async def result(saga_id: SagaId,
                     wait: Annotated[float, Query(ge=0, le=300, description="seconds to "
                                                  "wait for the saga to end")] = 0) -> Response:
        _check_text(saga_id)
        summary_or_404(saga_id)

        def ended() -> bool:
            status = (index.summary(saga_id) or {}).get("status")
            return status is not None and SagaStatus(status).terminal

        await visibility.wait_for(saga_id, ended, wait)
        summary = summary_or_404(saga_id)
        status = summary["status"]
        return _json({"saga_id": saga_id, "status": status,
                      "done": status is not None and SagaStatus(status).terminal,
                      "result": summary["result"], "error": summary["error"]})

    async def act(saga_id: str, value: Input, what: str) -> Response:
        """Send an input to a saga the index knows: 202 once Kafka has it."""
        _check_text(saga_id)
        summary_or_404(saga_id)
        await visibility.send(saga_id, value)
        return _json({"saga_id": saga_id, "accepted": True, "input": what}, 202)

    @app.post("/api/sagas/{saga_id}/signals/{name}", response_model=models.Accepted,
              status_code=202, tags=["sagas"])
    async def signal(saga_id: SagaId, name: Annotated[str, Path(min_length=1, max_length=200)],
                     body: models.SignalRequest | None = None) -> Response:
        _check_text(name)
        return await act(saga_id, DeliverSignal(name, body.payload if body else None),
                         f"signal {name}")

    @app.post("/api/sagas/{saga_id}/cancel", response_model=models.Accepted,
              status_code=202, tags=["sagas"])
    async def cancel(saga_id: SagaId, body: models.ReasonRequest | None = None) -> Response:
        reason = (body.reason if body else None) or "cancelled through the API"
        return await act(saga_id, CancelSaga(reason), "cancel")

    @app.post("/api/sagas/{saga_id}/resume", response_model=models.Accepted,
              status_code=202, tags=["sagas"])
    async def resume(saga_id: SagaId, body: models.ReasonRequest | None = None) -> Response:
        reason = (body.reason if body else None) or "resumed through the API"
        return await act(saga_id, ResumeSaga(reason), "resume")

    @app.post("/api/sagas/{saga_id}/abandon", response_model=models.Accepted,
              status_code=202, tags=["sagas"])
    async def abandon(saga_id: SagaId, body: models.AbandonRequest | None = None) -> Response:
        reason = (body.reason if body else None) or "abandoned through the API"
        return await act(saga_id, AbandonSaga(reason, bool(body and body.compensate)),
                         "abandon")

    @app.post("/api/sagas/{saga_id}/updates/{name}", response_model=models.UpdateAnswer,
              tags=["sagas"], responses={
                  202: {"model": models.UpdateAnswer, "description": "no answer yet"},
                  409: {"model": models.ErrorBody, "description": "the saga refused it"}})
    async def update(saga_id: SagaId, name: Annotated[str, Path(min_length=1, max_length=200)],
                     body: models.UpdateRequest | None = None) -> Response:
        _check_text(saga_id, name)
        summary_or_404(saga_id)
        request = body or models.UpdateRequest()
        update_id = request.update_id or uuid.uuid4().hex
        _check_text(update_id)

        def answered() -> bool:
            state = index.state(saga_id)
            return state is not None and update_id in state.updates

        if not answered():
            await visibility.send(saga_id, UpdateSaga(update_id, name, request.payload))
            await visibility.wait_for(saga_id, answered, request.wait)
        state = index.state(saga_id)
        answer = state.updates.get(update_id) if state is not None else None
        if answer is None:
            return _json({"update_id": update_id, "result": None, "pending": True}, 202)
        if "error" in answer:
            raise RequestRefused(409, answer["error"], "the saga's validator or handler "
                                 "refused it; nothing of it was applied")
        return _json({"update_id": update_id, "result": answer["result"], "pending": False})

    # ---- schedules -------------------------------------------------------------------
    def schedule_or_404(schedule_id: str) -> dict[str, Any]:
        _check_text(schedule_id)
        summary = index.summary(schedule_saga_id(schedule_id))
        entry = (summary or {}).get("attributes", {}).get("schedule")
        if summary is None or summary.get("type") != SCHEDULE_TYPE or not entry \
                or summary.get("ended_at_ms"):
            raise RequestRefused(404, f"no schedule {schedule_id!r}", "see GET /api/schedules")
        return {**entry, "saga_id": summary["saga_id"]}

    @app.post("/api/schedules", response_model=models.ScheduleCreated, status_code=201,
              tags=["schedules"], responses={200: {"model": models.ScheduleCreated,
                                                   "description": "it was there already"}})
    async def create_schedule(body: models.ScheduleRequest) -> Response:
        spec = ScheduleSpec.of(body.model_dump())
        _check_text(spec.schedule_id, spec.saga_type)
        if visibility.known_types and spec.saga_type not in visibility.known_types:
            raise RequestRefused(422, f"no workflow named {spec.saga_type!r}",
                                 f"known: {', '.join(visibility.known_types)}")
        started = await visibility.start_saga(schedule_saga_id(spec.schedule_id),
                                              SCHEDULE_TYPE, {"spec": spec.to_json()})
        code = 202 if started.created is None else 201 if started.created else 200
        return _json({"schedule_id": spec.schedule_id, "created": started.created}, code)

    @app.get("/api/schedules", response_model=list[models.Schedule], tags=["schedules"])
    async def schedules() -> Response:
        found = []
        for summary in _every(ListQuery(saga_type=SCHEDULE_TYPE, limit=1000)):
            entry = (summary.get("attributes") or {}).get("schedule")
            if entry and not summary.get("ended_at_ms"):
                found.append({**entry, "saga_id": summary["saga_id"]})
        return _json(found)

    @app.get("/api/schedules/{schedule_id}", response_model=models.Schedule,
             tags=["schedules"])
    async def schedule(schedule_id: Annotated[str, Path(max_length=200)]) -> Response:
        return _json(schedule_or_404(schedule_id))

    @app.post("/api/schedules/{schedule_id}/{op}", response_model=models.Accepted,
              status_code=202, tags=["schedules"])
    async def control(schedule_id: Annotated[str, Path(max_length=200)],
                      op: Literal["pause", "resume", "trigger"]) -> Response:
        schedule_or_404(schedule_id)
        return await act(schedule_saga_id(schedule_id),
                         DeliverSignal(CONTROL_SIGNAL, {"op": op}), op)

    @app.delete("/api/schedules/{schedule_id}", response_model=models.Accepted,
                status_code=202, tags=["schedules"])
    async def delete_schedule(schedule_id: Annotated[str, Path(max_length=200)]) -> Response:
        schedule_or_404(schedule_id)
        return await act(schedule_saga_id(schedule_id),
                         DeliverSignal(CONTROL_SIGNAL, {"op": Control.DELETE.value}), "delete")

    # ---- bulk ------------------------------------------------------------------------
    @app.post("/api/bulk/{action}", response_model=models.BulkResult, tags=["sagas"])
    async def bulk(action: Literal["cancel", "signal", "resume"],
                   body: models.BulkRequest) -> Response:
        chosen = body.filter
        for text in (chosen.type, chosen.id_prefix, body.name, body.reason):
            _check_text(text)
        if action == "signal" and not body.name:
            raise RequestRefused(422, "a bulk signal needs its name", 'send {"name": ...}')
        ids = [s["saga_id"] for s in _every(ListQuery(
            chosen.status, chosen.type, chosen.id_prefix, limit=1000, version=chosen.version,
            attributes=chosen.attributes))]
        if not body.dry_run:
            for saga_id in ids:
                if action == "cancel":
                    value: Input = CancelSaga(body.reason or "cancelled in bulk")
                elif action == "signal":
                    value = DeliverSignal(body.name or "", body.payload)
                else:
                    value = ResumeSaga(body.reason or "resumed in bulk")
                await visibility.send(saga_id, value)
        return _json({"matched": ids, "sent": 0 if body.dry_run else len(ids),
                      "dry_run": body.dry_run})

    def _every(query: ListQuery) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        cursor = None
        while True:
            page = index.page(replace(query, cursor=cursor))
            found.extend(page.sagas)
            cursor = page.next_cursor
            if cursor is None:
                return found

    @app.get("/api/stats", response_model=models.Stats, tags=["sagas"])
    async def stats() -> Response:
        return _json({"counts": index.counts(), "durations": index.durations()})

    @app.get("/api/stats/recent", response_model=list[models.RecentBucket], tags=["sagas"])
    async def recent() -> Response:
        return _json(visibility.feed.recent.series())

    # ---- timers and dead letters -----------------------------------------------------
    @app.get("/api/timers", response_model=models.TimersReport, tags=["timers"])
    async def timers(limit: Annotated[int, Query(ge=1, le=10_000)] = 100) -> Response:
        return _json(index.timers(int(time.time() * 1000), limit))

    @app.get("/api/dlq", response_model=list[models.DeadLetter], tags=["dead letters"])
    async def dlq(reason: Annotated[str | None, Query(max_length=200)] = None) -> Response:
        _check_text(reason)
        return _json([_shown(letter) for letter in index.dead_letters(reason)])

    @app.get("/api/dlq/letters/{letter_id}", response_model=models.DeadLetter,
             tags=["dead letters"])
    async def dead_letter(letter_id: Annotated[str, Path(pattern=models.LETTER_ID)]
                          ) -> Response:
        return _json(_shown(_letter(letter_id)))

    @app.post("/api/dlq/redrive", response_model=models.Redriven, tags=["dead letters"])
    async def redrive_letters(body: models.RedriveRequest) -> Response:
        if not body.ids and not body.reason:
            raise RequestRefused(422, "say which dead letters to redrive",
                           'send {"ids": ["PARTITION:OFFSET", ...]} or {"reason": "..."}')
        chosen = [_letter(i) for i in body.ids]
        if body.reason:
            _check_text(body.reason)
            chosen += [x for x in index.dead_letters(body.reason) if x["id"] not in body.ids]
        sent = await asyncio.to_thread(redrive, visibility.settings.kafka,
                                       [from_json(x) for x in chosen])
        return _json({"redriven": sent})

    def _letter(letter_id: str) -> dict[str, Any]:
        partition, _, offset = letter_id.partition(":")
        if not (partition.isdigit() and offset.isdigit()):
            raise RequestRefused(422, f"{letter_id!r} is not a dead letter id",
                           "ids are PARTITION:OFFSET, as GET /api/dlq gives them")
        letter = index.dead_letter(int(partition), int(offset))
        if letter is None:
            raise RequestRefused(404, f"no dead letter {letter_id}", "see GET /api/dlq")
        return letter

    # The console: static files over this API, nothing to build. Under /console/, not
    # at the root: a mount at / matches every path, so a wrong method on an API route
    # was answered 404 by the static files instead of 405 by the route.
    app.mount("/console", StaticFiles(directory=str(files("saga.server") / "console"),
                                      html=True), name="console")

    @app.get("/", include_in_schema=False)
    async def console_home() -> RedirectResponse:
        return RedirectResponse("/console/")

    return app


def _shown(letter: dict[str, Any]) -> dict[str, Any]:
    return public(from_json(letter))


def _check_text(*values: str | None) -> None:
    """Reject text that cannot be a Kafka key or RocksDB key (lone surrogates)."""
    for value in values:
        if value is not None:
            value.encode()


Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class _BodyLimit:
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
