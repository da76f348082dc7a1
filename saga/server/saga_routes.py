"""The HTTP routes over sagas: start, list, read, signal, cancel, resume, abandon,
update, in bulk, and their counts."""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
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
from saga.errors import RequestRefused
from saga.server import models
from saga.server.responses import check_text, json_response, raw_response
from saga.server.visibility import Visibility
from saga.store.visibility import ListQuery, VisibilityIndex, parse_attributes

SagaId = Annotated[str, Path(min_length=1, max_length=models.MAX_ID,
                             description="the saga id")]
Millis = Annotated[int | None, Query(ge=0, le=10**15, description="epoch milliseconds")]


def saga_routes(visibility: Visibility) -> APIRouter:
    routes = APIRouter()
    index = visibility.index

    @routes.post("/api/sagas", response_model=models.StartResponse, status_code=201,
                 tags=["sagas"], responses={200: {"model": models.StartResponse,
                                                  "description": "it was there already"},
                                            202: {"model": models.StartResponse,
                                                  "description": "sent; not visible yet"}})
    async def start(body: models.StartRequest) -> Response:
        if visibility.known_types and body.type not in visibility.known_types:
            raise RequestRefused(422, f"no workflow named {body.type!r}",
                           f"known: {', '.join(visibility.known_types)}")
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
            cursor: Annotated[str | None, Query(max_length=2000)] = None,
            version: Annotated[int | None, Query(ge=0, le=10**9)] = None,
            attribute: Annotated[list[str] | None, Query(
                max_length=20, description="KEY=VALUE (VALUE read as JSON when it is), "
                "repeatable: each must match")] = None) -> Response:
        for text in (type, id_prefix, cursor, *(attribute or [])):
            check_text(text)
        page = index.page(ListQuery(status, type, id_prefix, started_after, started_before,
                                    ended_after, ended_before, limit, cursor, version,
                                    parse_attributes(attribute, named="attribute")))
        return json_response({"sagas": page.sagas, "next_cursor": page.next_cursor})

    @routes.get("/api/sagas/{saga_id}", response_model=models.SagaSummary, tags=["sagas"])
    async def get_saga(saga_id: SagaId) -> Response:
        check_text(saga_id)
        raw = index.summary_json(saga_id)
        if raw is None:
            summary_or_404(index, saga_id)
        assert raw is not None
        return raw_response(raw)

    @routes.get("/api/sagas/{saga_id}/history", response_model=list[models.HistoryEntry],
                tags=["sagas"])
    async def history(saga_id: SagaId) -> Response:
        check_text(saga_id)
        rows = index.history_json(saga_id)
        if not rows:
            summary_or_404(index, saga_id)
        return raw_response(b"[" + b",".join(rows) + b"]")

    @routes.get("/api/sagas/{saga_id}/result", response_model=models.SagaResult, tags=["sagas"])
    async def result(saga_id: SagaId,
                     wait: Annotated[float, Query(ge=0, le=300, description="seconds to "
                                                  "wait for the saga to end")] = 0) -> Response:
        check_text(saga_id)
        summary_or_404(index, saga_id)

        def ended() -> bool:
            status = (index.summary(saga_id) or {}).get("status")
            return status is not None and SagaStatus(status).terminal

        await visibility.wait_for(saga_id, ended, wait)
        summary = summary_or_404(index, saga_id)
        status = summary["status"]
        return json_response({"saga_id": saga_id, "status": status,
                              "done": status is not None and SagaStatus(status).terminal,
                              "result": summary["result"], "error": summary["error"]})

    @routes.post("/api/sagas/{saga_id}/signals/{name}", response_model=models.Accepted,
                 status_code=202, tags=["sagas"])
    async def signal(saga_id: SagaId, name: Annotated[str, Path(min_length=1, max_length=200)],
                     body: models.SignalRequest | None = None) -> Response:
        check_text(name)
        return await act(visibility, saga_id, DeliverSignal(name, body.payload if body else None),
                         f"signal {name}")

    @routes.post("/api/sagas/{saga_id}/cancel", response_model=models.Accepted,
                 status_code=202, tags=["sagas"])
    async def cancel(saga_id: SagaId, body: models.ReasonRequest | None = None) -> Response:
        reason = (body.reason if body else None) or "cancelled through the API"
        return await act(visibility, saga_id, CancelSaga(reason), "cancel")

    @routes.post("/api/sagas/{saga_id}/resume", response_model=models.Accepted,
                 status_code=202, tags=["sagas"])
    async def resume(saga_id: SagaId, body: models.ReasonRequest | None = None) -> Response:
        reason = (body.reason if body else None) or "resumed through the API"
        return await act(visibility, saga_id, ResumeSaga(reason), "resume")

    @routes.post("/api/sagas/{saga_id}/abandon", response_model=models.Accepted,
                 status_code=202, tags=["sagas"])
    async def abandon(saga_id: SagaId, body: models.AbandonRequest | None = None) -> Response:
        reason = (body.reason if body else None) or "abandoned through the API"
        return await act(visibility, saga_id, AbandonSaga(reason, bool(body and body.compensate)),
                         "abandon")

    @routes.post("/api/sagas/{saga_id}/updates/{name}", response_model=models.UpdateAnswer,
                 tags=["sagas"], responses={
                     202: {"model": models.UpdateAnswer, "description": "no answer yet"},
                     409: {"model": models.ErrorBody, "description": "the saga refused it"}})
    async def update(saga_id: SagaId, name: Annotated[str, Path(min_length=1, max_length=200)],
                     body: models.UpdateRequest | None = None) -> Response:
        check_text(saga_id, name)
        summary_or_404(index, saga_id)
        request = body or models.UpdateRequest()
        update_id = request.update_id or uuid.uuid4().hex
        check_text(update_id)

        def answered() -> bool:
            state = index.state(saga_id)
            return state is not None and update_id in state.updates

        if not answered():
            await visibility.send(saga_id, UpdateSaga(update_id, name, request.payload))
            await visibility.wait_for(saga_id, answered, request.wait)
        state = index.state(saga_id)
        answer = state.updates.get(update_id) if state is not None else None
        if answer is None:
            return json_response({"update_id": update_id, "result": None, "pending": True}, 202)
        if "error" in answer:
            raise RequestRefused(409, answer["error"], "the saga's validator or handler "
                                 "refused it; nothing of it was applied")
        return json_response({"update_id": update_id, "result": answer["result"], "pending": False})

    @routes.post("/api/bulk/{action}", response_model=models.BulkResult, tags=["sagas"])
    async def bulk(action: Literal["cancel", "signal", "resume"],
                   body: models.BulkRequest) -> Response:
        chosen = body.filter
        for text in (chosen.type, chosen.id_prefix, body.name, body.reason):
            check_text(text)
        if action == "signal" and not body.name:
            raise RequestRefused(422, "a bulk signal needs its name", 'send {"name": ...}')
        ids = [s["saga_id"] for s in every(index, ListQuery(
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
        return json_response({"matched": ids, "sent": 0 if body.dry_run else len(ids),
                              "dry_run": body.dry_run})

    @routes.get("/api/stats", response_model=models.Stats, tags=["sagas"])
    async def stats() -> Response:
        return json_response({"counts": index.counts(), "durations": index.durations()})

    @routes.get("/api/stats/recent", response_model=list[models.RecentBucket], tags=["sagas"])
    async def recent() -> Response:
        return json_response(visibility.feed.recent.series())

    return routes


def summary_or_404(index: VisibilityIndex, saga_id: str) -> dict[str, Any]:
    summary = index.summary(saga_id)
    if summary is None:
        raise RequestRefused(404, f"no saga {saga_id!r}", "check the id (GET /api/sagas); a "
                             "saga started a moment ago appears within about a second")
    return summary


async def act(visibility: Visibility, saga_id: str, value: Input, what: str) -> Response:
    """Send an input to a saga the index knows: 202 once Kafka has it."""
    check_text(saga_id)
    summary_or_404(visibility.index, saga_id)
    await visibility.send(saga_id, value)
    return json_response({"saga_id": saga_id, "accepted": True, "input": what}, 202)


def every(index: VisibilityIndex, query: ListQuery) -> list[dict[str, Any]]:
    """Every page of ``query``'s answer."""
    found: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = index.page(replace(query, cursor=cursor))
        found.extend(page.sagas)
        cursor = page.next_cursor
        if cursor is None:
            return found
