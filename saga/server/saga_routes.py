"""The HTTP routes over sagas: start, list, read, signal, cancel, resume, abandon,
update, in bulk, and their counts.

Path parameters are ``{name:segment}``: matched on the path as sent and decoded once
(guards.py). Every read of the index runs in its threads, ``visibility.read`` for a few
keys and ``visibility.scan`` for the rest, and is bounded (saga/store/visibility.py).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response

from saga.engine.inputs import (
    AbandonSaga,
    CancelSaga,
    DeliverSignal,
    Input,
    ResumeSaga,
    UpdateSaga,
)
from saga.engine.lifecycle import SagaStatus
from saga.errors import InvalidRequest, SagaNotFound, UnknownSagaType, UpdateRefused
from saga.server import models
from saga.server.guards import JsonBodyRoute
from saga.server.responses import check_text, json_response, raw_response
from saga.server.visibility import Visibility
from saga.store.visibility import ListQuery, parse_attributes

SagaId = Annotated[str, Path(min_length=1, max_length=models.MAX_ID,
                             description="the saga id, percent-encoded as one segment")]
Name = Annotated[str, Path(min_length=1, max_length=200)]
Millis = Annotated[int | None, Query(ge=0, le=10**15, description="epoch milliseconds")]
Cursor = Annotated[str | None, Query(max_length=2000, description="where the previous "
                                     "page stopped (its next_cursor, or the cursor of its "
                                     "Link rel=next)")]

def saga_routes(visibility: Visibility) -> APIRouter:
    routes = APIRouter(route_class=JsonBodyRoute)
    index = visibility.index
    scan_limit = visibility.settings.server_scan_limit

    @routes.post("/api/sagas", response_model=models.StartResponse, status_code=201,
                 tags=["sagas"], responses={200: {"model": models.StartResponse,
                                                  "description": "it was there already"},
                                            202: {"model": models.StartResponse,
                                                  "description": "sent; not visible yet"}})
    async def start(body: models.StartRequest) -> Response:
        if visibility.known_types and body.type not in visibility.known_types:
            raise UnknownSagaType(f"no workflow named {body.type!r}",
                                  hint=f"known: {', '.join(visibility.known_types)}")
        check_text(body.id)
        started = await visibility.start_saga(body.id, body.type, body.input)
        if started.created is None:
            return json_response({"saga_id": body.id, "created": None, "status": None,
                                  "hint": "sent to saga.inbox; no coordinator has started it yet "
                                  "(is one running?)"}, 202)
        return json_response({"saga_id": body.id, "created": started.created,
                              "status": started.status, "hint": None},
                             201 if started.created else 200)

    @routes.get("/api/sagas", response_model=models.SagaPage, tags=["sagas"])
    async def list_sagas(
            status: Annotated[SagaStatus | None, Query()] = None,
            type: Annotated[str | None, Query(max_length=200)] = None,
            id_prefix: Annotated[str | None, Query(max_length=models.MAX_ID)] = None,
            started_after: Millis = None, started_before: Millis = None,
            ended_after: Millis = None, ended_before: Millis = None,
            limit: Annotated[int, Query(ge=1, le=1000)] = 100,
            cursor: Cursor = None,
            version: Annotated[int | None, Query(ge=0, le=10**9)] = None,
            attribute: Annotated[list[str] | None, Query(
                max_length=20, description="KEY=VALUE (VALUE read as JSON when it is), "
                "repeatable: each must match")] = None) -> Response:
        for text in (type, id_prefix, cursor, *(attribute or [])):
            check_text(text)
        query = ListQuery(status, type, id_prefix, started_after, started_before,
                          ended_after, ended_before, limit, cursor, version,
                          parse_attributes(attribute, named="attribute"))
        def listing() -> bytes:  # encoded in the reading thread too: a page can be large
            page = index.page(query, scan_limit=scan_limit)
            return orjson.dumps({"sagas": page.sagas, "next_cursor": page.next_cursor})

        return raw_response(await visibility.scan(listing))

    @routes.get("/api/sagas/{saga_id:segment}", response_model=models.SagaSummary,
                tags=["sagas"])
    async def get_saga(saga_id: SagaId) -> Response:
        check_text(saga_id)
        raw = await visibility.read(index.summary_json, saga_id)
        if raw is None:
            raise not_found(saga_id)
        return raw_response(raw)

    @routes.get("/api/sagas/{saga_id:segment}/history",
                response_model=list[models.HistoryEntry], tags=["sagas"],
                description="A page of its journal entries in order (up to limit, and "
                "about 8 MiB); a Link header with rel=next names the next page.")
    async def history(request: Request, saga_id: SagaId,
                      limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
                      cursor: Cursor = None) -> Response:
        check_text(saga_id, cursor)
        page = await visibility.scan(index.history_page, saga_id, cursor, limit=limit)
        if not page.rows and await visibility.read(index.summary_json, saga_id) is None:
            raise not_found(saga_id)
        return raw_response(b"[" + b",".join(page.rows) + b"]",
                            headers=next_link(request, page.next_cursor))

    @routes.get("/api/sagas/{saga_id:segment}/result", response_model=models.SagaResult,
                tags=["sagas"])
    async def result(saga_id: SagaId,
                     wait: Annotated[float, Query(ge=0, le=300, description="seconds to "
                                                  "wait for the saga to end")] = 0) -> Response:
        check_text(saga_id)
        await summary_or_404(visibility, saga_id)

        async def ended() -> bool:
            status = (await visibility.read(index.summary, saga_id) or {}).get("status")
            return status is not None and SagaStatus(status).terminal

        if wait > 0:
            async with visibility.waiting():
                await visibility.wait_for(saga_id, ended, wait)
        summary = await summary_or_404(visibility, saga_id)
        status = summary["status"]
        return json_response({"saga_id": saga_id, "status": status,
                              "done": status is not None and SagaStatus(status).terminal,
                              "result": summary["result"], "error": summary["error"]})

    @routes.post("/api/sagas/{saga_id:segment}/signals/{name:segment}",
                 response_model=models.Accepted, status_code=202, tags=["sagas"])
    async def signal(saga_id: SagaId, name: Name, body: models.SignalRequest) -> Response:
        check_text(name)
        return await act(visibility, saga_id, DeliverSignal(name, body.payload),
                         f"signal {name}")

    @routes.post("/api/sagas/{saga_id:segment}/cancel", response_model=models.Accepted,
                 status_code=202, tags=["sagas"])
    async def cancel(saga_id: SagaId, body: models.ReasonRequest) -> Response:
        reason = body.reason or "cancelled through the API"
        return await act(visibility, saga_id, CancelSaga(reason), "cancel")

    @routes.post("/api/sagas/{saga_id:segment}/resume", response_model=models.Accepted,
                 status_code=202, tags=["sagas"])
    async def resume(saga_id: SagaId, body: models.ReasonRequest) -> Response:
        reason = body.reason or "resumed through the API"
        return await act(visibility, saga_id, ResumeSaga(reason), "resume")

    @routes.post("/api/sagas/{saga_id:segment}/abandon", response_model=models.Accepted,
                 status_code=202, tags=["sagas"])
    async def abandon(saga_id: SagaId, body: models.AbandonRequest) -> Response:
        reason = body.reason or "abandoned through the API"
        return await act(visibility, saga_id, AbandonSaga(reason, body.compensate), "abandon")

    @routes.post("/api/sagas/{saga_id:segment}/updates/{name:segment}",
                 response_model=models.UpdateAnswer, tags=["sagas"], responses={
                     202: {"model": models.UpdateAnswer, "description": "no answer yet"},
                     409: {"model": models.ErrorBody, "description": "the saga refused it"}})
    async def update(saga_id: SagaId, name: Name, body: models.UpdateRequest) -> Response:
        check_text(saga_id, name)
        await summary_or_404(visibility, saga_id)
        update_id = body.update_id or uuid.uuid4().hex
        check_text(update_id)

        async def answer() -> dict[str, Any] | None:
            state = await visibility.read(index.state, saga_id)
            return state.updates.get(update_id) if state is not None else None

        async def answered() -> bool:
            return await answer() is not None

        if not await answered():
            async with visibility.waiting():
                await visibility.send(saga_id, UpdateSaga(update_id, name, body.payload))
                await visibility.wait_for(saga_id, answered, body.wait)
        held = await answer()
        if held is None:
            return json_response({"update_id": update_id, "result": None, "pending": True}, 202)
        if "error" in held:
            raise UpdateRefused(held["error"], hint="the saga's validator or handler refused "
                                "it; nothing of it was applied")
        return json_response({"update_id": update_id, "result": held["result"],
                              "pending": False})

    @routes.post("/api/bulk/{action:segment}", response_model=models.BulkResult,
                 tags=["sagas"], description="One input to each saga the filter takes, up "
                 "to limit per request; next_cursor, when not null, goes on from there.")
    async def bulk(action: Literal["cancel", "signal", "resume"],
                   body: models.BulkRequest) -> Response:
        chosen = body.filter
        for text in (chosen.type, chosen.id_prefix, body.name, body.reason, body.cursor):
            check_text(text)
        if action == "signal" and not body.name:
            raise InvalidRequest("a bulk signal needs its name", hint='send {"name": ...}')
        page = await visibility.scan(index.page, ListQuery(
            chosen.status, chosen.type, chosen.id_prefix, limit=body.limit,
            cursor=body.cursor, version=chosen.version, attributes=chosen.attributes),
            scan_limit=scan_limit)
        ids = [s["saga_id"] for s in page.sagas]
        if not body.dry_run:
            for saga_id in ids:
                if action == "cancel":
                    value: Input = CancelSaga(body.reason or "cancelled in bulk")
                elif action == "signal":
                    value = DeliverSignal(body.name or "", body.payload)
                else:
                    value = ResumeSaga(body.reason or "resumed in bulk")
                await visibility.send(saga_id, value)
        return json_response({"matched": ids, "sent": 0 if body.dry_run else len(ids),
                              "dry_run": body.dry_run, "next_cursor": page.next_cursor})

    @routes.get("/api/stats", response_model=models.Stats, tags=["sagas"])
    async def stats() -> Response:
        def read() -> bytes:
            return orjson.dumps({"counts": index.counts(), "durations": index.durations(),
                                 "dead_letters": index.dead_letter_count()})

        return raw_response(await visibility.scan(read))

    @routes.get("/api/stats/recent", response_model=list[models.RecentBucket], tags=["sagas"])
    async def recent() -> Response:
        return json_response(visibility.feed.recent.series())

    return routes


def not_found(saga_id: str) -> SagaNotFound:
    return SagaNotFound(f"no saga {saga_id!r}", hint="check the id (GET /api/sagas); a saga "
                        "started a moment ago appears within about a second")


async def summary_or_404(visibility: Visibility, saga_id: str) -> dict[str, Any]:
    summary = await visibility.read(visibility.index.summary, saga_id)
    if summary is None:
        raise not_found(saga_id)
    return summary


async def act(visibility: Visibility, saga_id: str, value: Input, what: str) -> Response:
    """Send an input to a saga the index knows: 202 once Kafka has it."""
    check_text(saga_id)
    await summary_or_404(visibility, saga_id)
    await visibility.send(saga_id, value)
    return json_response({"saga_id": saga_id, "accepted": True, "input": what}, 202)


def next_link(request: Request, cursor: str | None) -> dict[str, str]:
    """The Link header of a list answered a page at a time (RFC 8288): this request
    again, from ``cursor`` on; none on the last page."""
    if cursor is None:
        return {}
    params = [(k, v) for k, v in request.query_params.multi_items() if k != "cursor"]
    query = urlencode([*params, ("cursor", cursor)])
    return {"link": f'<{request.scope["path"]}?{query}>; rel="next"'}
