"""The HTTP routes over schedules: create, list, read, pause, resume, trigger, delete.
A schedule is a saga of its own (saga/engine/schedule.py); these address it by its id."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response

from saga.engine.inputs import DeliverSignal
from saga.engine.schedule import (
    CONTROL_SIGNAL,
    SCHEDULE_TYPE,
    Control,
    ScheduleSpec,
    schedule_saga_id,
)
from saga.errors import ScheduleNotFound, UnknownSagaType
from saga.server import models
from saga.server.guards import JsonBodyRoute
from saga.server.responses import check_text, json_response
from saga.server.saga_routes import Cursor, act, next_link
from saga.server.visibility import Visibility
from saga.store.visibility import ListQuery

ScheduleId = Annotated[str, Path(max_length=200, description="the schedule id, "
                                 "percent-encoded as one segment")]


def schedule_routes(visibility: Visibility) -> APIRouter:
    routes = APIRouter(route_class=JsonBodyRoute)
    index = visibility.index
    scan_limit = visibility.settings.server_scan_limit

    @routes.post("/api/schedules", response_model=models.ScheduleCreated, status_code=201,
                 tags=["schedules"], responses={200: {"model": models.ScheduleCreated,
                                                      "description": "it was there already"}})
    async def create_schedule(body: models.ScheduleRequest) -> Response:
        spec = ScheduleSpec.of(body.model_dump())
        check_text(spec.schedule_id, spec.saga_type)
        if visibility.known_types and spec.saga_type not in visibility.known_types:
            raise UnknownSagaType(f"no workflow named {spec.saga_type!r}",
                                  hint=f"known: {', '.join(visibility.known_types)}")
        started = await visibility.start_saga(schedule_saga_id(spec.schedule_id),
                                              SCHEDULE_TYPE, {"spec": spec.to_json()})
        code = 202 if started.created is None else 201 if started.created else 200
        return json_response({"schedule_id": spec.schedule_id, "created": started.created}, code)

    @routes.get("/api/schedules", response_model=list[models.Schedule], tags=["schedules"],
                description="A page of the schedules (up to limit); a Link header with "
                "rel=next names the next page.")
    async def schedules(request: Request, limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                        cursor: Cursor = None) -> Response:
        check_text(cursor)
        page = await visibility.scan(index.page, ListQuery(
            saga_type=SCHEDULE_TYPE, limit=limit, cursor=cursor), scan_limit=scan_limit)
        found = []
        for summary in page.sagas:
            entry = (summary.get("attributes") or {}).get("schedule")
            if entry and not summary.get("ended_at_ms"):
                found.append({**entry, "saga_id": summary["saga_id"]})
        return json_response(found, headers=next_link(request, page.next_cursor))

    @routes.get("/api/schedules/{schedule_id:segment}", response_model=models.Schedule,
                tags=["schedules"])
    async def schedule(schedule_id: ScheduleId) -> Response:
        return json_response(await schedule_or_404(visibility, schedule_id))

    @routes.post("/api/schedules/{schedule_id:segment}/{op:segment}",
                 response_model=models.Accepted, status_code=202, tags=["schedules"])
    async def control(schedule_id: ScheduleId, op: Literal["pause", "resume", "trigger"],
                      body: models.EmptyRequest) -> Response:
        await schedule_or_404(visibility, schedule_id)
        return await act(visibility, schedule_saga_id(schedule_id),
                         DeliverSignal(CONTROL_SIGNAL, {"op": op}), op)

    @routes.delete("/api/schedules/{schedule_id:segment}", response_model=models.Accepted,
                   status_code=202, tags=["schedules"])
    async def delete_schedule(schedule_id: ScheduleId, body: models.EmptyRequest) -> Response:
        await schedule_or_404(visibility, schedule_id)
        return await act(visibility, schedule_saga_id(schedule_id),
                         DeliverSignal(CONTROL_SIGNAL, {"op": Control.DELETE.value}), "delete")

    return routes


async def schedule_or_404(visibility: Visibility, schedule_id: str) -> dict[str, Any]:
    check_text(schedule_id)
    summary = await visibility.read(visibility.index.summary, schedule_saga_id(schedule_id))
    entry = (summary or {}).get("attributes", {}).get("schedule")
    if summary is None or summary.get("type") != SCHEDULE_TYPE or not entry \
            or summary.get("ended_at_ms"):
        raise ScheduleNotFound(f"no schedule {schedule_id!r}")
    return {**entry, "saga_id": summary["saga_id"]}
