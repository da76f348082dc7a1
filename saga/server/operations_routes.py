"""The HTTP routes an operator watches: health, readiness, metrics, the timers that
are due, and the dead letters, with their redrive."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from saga.errors import RequestRefused
from saga.kafka.dead_letters import from_json, public, redrive
from saga.server import models
from saga.server.responses import check_text, json_response
from saga.server.visibility import Visibility
from saga.store.visibility import VisibilityIndex
from saga.telemetry import metrics


def operations_routes(visibility: Visibility) -> APIRouter:
    routes = APIRouter()
    index = visibility.index

    @routes.get("/healthz", response_model=models.Health, tags=["health"])
    async def healthz() -> Response:
        failed = visibility.feed.status.failed
        return json_response({"status": "failed" if failed else "ok", "feed_error": failed})

    @routes.get("/readyz", response_model=models.Readiness, tags=["health"],
                responses={503: {"model": models.Readiness, "description": "catching up"}})
    async def readyz() -> Response:
        status = visibility.feed.status
        ready = status.ready and status.failed is None
        return json_response({"ready": ready, "lag": status.lag, "entries_indexed": status.entries,
                              "hint": None if ready else status.failed or "catching up with "
                              "saga.journal"}, 200 if ready else 503)

    @routes.get("/metrics", tags=["health"], response_class=Response,
                responses={200: {"content": {"text/plain": {}},
                                 "description": "Prometheus text format"}})
    async def prometheus() -> Response:
        for status, count in index.counts().items():
            metrics.SAGAS.labels(status).set(count)
        for topic, lag in visibility.feed.status.lag.items():
            metrics.INDEX_LAG.labels(topic).set(lag)
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @routes.get("/api/timers", response_model=models.TimersReport, tags=["timers"])
    async def timers(limit: Annotated[int, Query(ge=1, le=10_000)] = 100) -> Response:
        return json_response(index.timers(int(time.time() * 1000), limit))

    @routes.get("/api/dlq", response_model=list[models.DeadLetter], tags=["dead letters"])
    async def dlq(reason: Annotated[str | None, Query(max_length=200)] = None) -> Response:
        check_text(reason)
        return json_response([_shown(letter) for letter in index.dead_letters(reason)])

    @routes.get("/api/dlq/letters/{letter_id}", response_model=models.DeadLetter,
                tags=["dead letters"])
    async def dead_letter(letter_id: Annotated[str, Path(pattern=models.LETTER_ID)]
                          ) -> Response:
        return json_response(_shown(letter_or_404(index, letter_id)))

    @routes.post("/api/dlq/redrive", response_model=models.Redriven, tags=["dead letters"])
    async def redrive_letters(body: models.RedriveRequest) -> Response:
        if not body.ids and not body.reason:
            raise RequestRefused(422, "say which dead letters to redrive",
                           'send {"ids": ["PARTITION:OFFSET", ...]} or {"reason": "..."}')
        chosen = [letter_or_404(index, i) for i in body.ids]
        if body.reason:
            check_text(body.reason)
            chosen += [x for x in index.dead_letters(body.reason) if x["id"] not in body.ids]
        sent = await asyncio.to_thread(redrive, visibility.settings.kafka,
                                       [from_json(x) for x in chosen])
        return json_response({"redriven": sent})

    return routes


def _shown(letter: dict[str, Any]) -> dict[str, Any]:
    return public(from_json(letter))


def letter_or_404(index: VisibilityIndex, letter_id: str) -> dict[str, Any]:
    partition, _, offset = letter_id.partition(":")
    if not (partition.isdigit() and offset.isdigit()):
        raise RequestRefused(422, f"{letter_id!r} is not a dead letter id",
                       "ids are PARTITION:OFFSET, as GET /api/dlq gives them")
    letter = index.dead_letter(int(partition), int(offset))
    if letter is None:
        raise RequestRefused(404, f"no dead letter {letter_id}", "see GET /api/dlq")
    return letter

