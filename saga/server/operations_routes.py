"""The HTTP routes an operator watches: health, readiness, metrics, the timers that
are due, and the dead letters, with their redrive."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from saga.errors import DeadLetterNotFound, InvalidRequest
from saga.kafka.dead_letters import from_json, redrive
from saga.server import models
from saga.server.guards import JsonBodyRoute
from saga.server.responses import check_text, json_response, raw_response
from saga.server.saga_routes import Cursor, next_link
from saga.server.visibility import Visibility
from saga.store.visibility import VisibilityIndex
from saga.telemetry import metrics

LetterId = Annotated[str, Path(pattern=models.LETTER_ID)]


def operations_routes(visibility: Visibility) -> APIRouter:
    routes = APIRouter(route_class=JsonBodyRoute)
    index = visibility.index
    scan_limit = visibility.settings.server_scan_limit

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
        for status, count in (await visibility.read(index.counts)).items():
            metrics.SAGAS.labels(status).set(count)
        for topic, lag in visibility.feed.status.lag.items():
            metrics.INDEX_LAG.labels(topic).set(lag)
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @routes.get("/api/timers", response_model=models.TimersReport, tags=["timers"])
    async def timers(limit: Annotated[int, Query(ge=1, le=10_000)] = 100) -> Response:
        def report() -> bytes:  # encoded in the reading thread: up to 10,000 timers
            return orjson.dumps(index.timers(int(time.time() * 1000), limit,
                                             scan_limit=scan_limit))

        return raw_response(await visibility.scan(report))

    @routes.get("/api/dlq", response_model=list[models.DeadLetter], tags=["dead letters"],
                description="A page of the dead letters (up to limit), oldest first per "
                "partition; a Link header with rel=next names the next page. How many "
                "there are in all: GET /api/stats.")
    async def dlq(request: Request,
                  reason: Annotated[str | None, Query(max_length=200)] = None,
                  limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                  cursor: Cursor = None) -> Response:
        check_text(reason, cursor)
        def letters() -> tuple[bytes, str | None]:
            page = index.letters_page(reason, limit=limit, cursor=cursor,
                                      scan_limit=scan_limit)
            return orjson.dumps(page.sagas), page.next_cursor

        body, next_cursor = await visibility.scan(letters)
        return raw_response(body, headers=next_link(request, next_cursor))

    @routes.get("/api/dlq/letters/{letter_id:segment}", response_model=models.DeadLetter,
                tags=["dead letters"])
    async def dead_letter(letter_id: LetterId) -> Response:
        partition, offset = letter_position(letter_id)
        shown = await visibility.read(index.shown_letter, partition, offset)
        if shown is None:
            raise DeadLetterNotFound(f"no dead letter {letter_id}")
        return json_response(shown)

    @routes.post("/api/dlq/redrive", response_model=models.Redriven, tags=["dead letters"],
                 description="The letters named, or those of one reason: up to limit per "
                 "request, next_cursor going on from there.")
    async def redrive_letters(body: models.RedriveRequest) -> Response:
        if not body.ids and not body.reason:
            raise InvalidRequest("say which dead letters to redrive",
                                 hint='send {"ids": ["PARTITION:OFFSET", ...]} or '
                                 '{"reason": "..."}')
        check_text(body.reason, body.cursor)
        named = [letter_position(i) for i in body.ids]
        next_cursor = None
        if body.reason:
            page = await visibility.scan(index.letters_page, body.reason, limit=body.limit,
                                         cursor=body.cursor, scan_limit=scan_limit)
            asked = set(body.ids)
            named += [letter_position(x["id"]) for x in page.sagas if x["id"] not in asked]
            next_cursor = page.next_cursor
        for partition, offset in named[:len(body.ids)]:
            if await visibility.read(index.shown_letter, partition, offset) is None:
                raise DeadLetterNotFound(f"no dead letter {partition}:{offset}")
        done = await asyncio.to_thread(redrive, visibility.settings, _letters(index, named))
        return json_response({"redriven": done.sent,
                              "refused": [r.to_json() for r in done.refused],
                              "next_cursor": next_cursor})

    return routes


def _letters(index: VisibilityIndex, named: list[tuple[int, int]]
             ) -> Iterator[dict[str, Any]]:
    """The letters with their bytes, one at a time: a redrive holds one in memory."""
    for partition, offset in named:
        letter = index.dead_letter(partition, offset)
        if letter is not None:
            yield from_json(letter)


def letter_position(letter_id: str) -> tuple[int, int]:
    partition, _, offset = letter_id.partition(":")
    if not (partition.isdigit() and offset.isdigit()):
        raise InvalidRequest(f"{letter_id!r} is not a dead letter id",
                             hint="ids are PARTITION:OFFSET, as GET /api/dlq gives them")
    return int(partition), int(offset)
