"""The visibility server's core, HTTP aside: its index and the feed that fills it, the
inbox producer that acts for API callers, and the waiting that long polls need.

Several replicas may run side by side, each with its own index (under
``<state_dir>/server/<instance id>``): they read the same topics and give the same
answers. A restart resumes from the index's stored offsets; a lost or foreign index is
rebuilt by replaying the topics.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

import anyio
import anyio.to_thread

from saga.config import Settings
from saga.engine.inputs import Input, StartSaga
from saga.engine.lifecycle import SagaStatus
from saga.errors import ServerBusy
from saga.kafka import clients
from saga.kafka.caches import open_topic_cache
from saga.kafka.inbox import InboxProducer
from saga.kafka.topics import admin_client, source_of
from saga.layout import StateLayout
from saga.server.feed import IndexFeed
from saga.store.visibility import VisibilityIndex

log = logging.getLogger("saga.server")
#: Threads for reads of a few keys: cheap, and kept apart from the scans' queue.
POINT_READERS = 4
_T = TypeVar("_T")
_P = ParamSpec("_P")


@dataclass(frozen=True)
class Started:
    created: bool | None  # None: the saga did not become visible in time
    status: SagaStatus | None


class Visibility:
    def __init__(self, settings: Settings, *, instance_id: str,
                 known_types: Iterable[str] = (), start_wait_s: float = 5.0) -> None:
        self.settings = settings
        self.instance_id = instance_id
        #: The workflow types new starts are checked against (empty: not checked).
        self.known_types = sorted(set(known_types))
        self.start_wait_s = start_wait_s
        self.index = self._open_index()
        self.inbox = InboxProducer(settings)
        self.feed = IndexFeed(settings, self.index, on_change=self._changed_elsewhere)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiting: dict[str, set[asyncio.Event]] = {}
        self._waiters = 0
        self._readers: anyio.CapacityLimiter | None = None
        self._scanners: anyio.CapacityLimiter | None = None

    def _open_index(self) -> VisibilityIndex:
        kafka = self.settings.kafka
        journal = self.settings.topic("saga.journal")
        path = StateLayout(self.settings.state_dir).visibility_index(self.instance_id)
        return open_topic_cache(
            VisibilityIndex, path, source=source_of(admin_client(kafka), journal),
            topic="saga.journal", say=log.info,
            past_end=lambda offsets: clients.offsets_past_end(kafka, journal, offsets))

    # ---- lifecycle (the ASGI app's lifespan) ---------------------------------------
    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._readers = anyio.CapacityLimiter(POINT_READERS)
        self._scanners = anyio.CapacityLimiter(self.settings.server_scan_threads)
        self.feed.start()

    def stop(self) -> None:
        self.feed.stop()
        self.index.close()

    # ---- reading the index ---------------------------------------------------------
    async def read(self, work: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        """``work(*args)``, a read of a few keys (a saga's summary, its state), in one of
        POINT_READERS threads: never on the event loop, and never queued behind a scan."""
        return await self._run(self._readers, work, *args, **kwargs)

    async def scan(self, work: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        """``work(*args)``, a bounded scan of the index (a listing, a history page, dead
        letters, timers, stats), in one of SAGA_SERVER_SCAN_THREADS threads: /healthz and
        every other request are answered while it runs; more scans queue."""
        return await self._run(self._scanners, work, *args, **kwargs)

    @staticmethod
    async def _run(limiter: anyio.CapacityLimiter | None, work: Callable[_P, _T],
                   *args: _P.args, **kwargs: _P.kwargs) -> _T:
        if limiter is None:  # outside the app's lifespan (tools, tests)
            return work(*args, **kwargs)
        return await anyio.to_thread.run_sync(lambda: work(*args, **kwargs), limiter=limiter)

    @asynccontextmanager
    async def waiting(self) -> AsyncIterator[None]:
        """Hold one of the SAGA_SERVER_MAX_WAITING places of requests that wait (long
        polls); ServerBusy, at once, when none is free."""
        if self._waiters >= self.settings.server_max_waiting:
            raise ServerBusy(f"this server already holds {self._waiters} waiting requests "
                             "(SAGA_SERVER_MAX_WAITING)")
        self._waiters += 1
        try:
            yield
        finally:
            self._waiters -= 1

    # ---- waiting for the index -----------------------------------------------------
    def _changed_elsewhere(self, saga_ids: set[str]) -> None:
        """Called by the feed's thread after each write."""
        loop = self._loop
        if loop is not None and self._waiting:
            loop.call_soon_threadsafe(self._wake, saga_ids)

    def _wake(self, saga_ids: set[str]) -> None:
        for saga_id in saga_ids & set(self._waiting):
            for event in self._waiting[saga_id]:
                event.set()

    async def wait_for(self, saga_id: str, done: Callable[[], Awaitable[bool]],
                       timeout_s: float) -> bool:
        """Wait until ``await done()`` (re-checked each time the saga changes) or the
        timeout; whether it is done."""
        deadline = time.monotonic() + timeout_s
        event = asyncio.Event()
        self._waiting.setdefault(saga_id, set()).add(event)
        try:
            while not await done():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                event.clear()
                try:
                    await asyncio.wait_for(event.wait(), left)
                except TimeoutError:
                    return await done()
            return True
        finally:
            waiting = self._waiting.get(saga_id)
            if waiting is not None:
                waiting.discard(event)
                if not waiting:
                    del self._waiting[saga_id]

    # ---- acting ----------------------------------------------------------------------
    async def start_saga(self, saga_id: str, saga_type: str, saga_input: Any) -> Started:
        """Start the saga unless the index already has it; whether this call created it,
        told by the inbox record the saga's first entry names as its cause."""
        known = await self.read(self.index.summary, saga_id)
        if known is not None:
            return Started(False, SagaStatus(known["status"]) if known["status"] else None)

        async def started() -> bool:
            return await self.read(self.index.started_by, saga_id) is not None

        async with self.waiting():  # up to start_wait_s: it counts as a waiting request
            partition, offset = await asyncio.to_thread(
                self.inbox.deliver, saga_id, StartSaga(saga_type, saga_input))
            ours = f"{self.settings.topic('saga.inbox')}/{partition}/{offset}"
            if not await self.wait_for(saga_id, started, self.start_wait_s):
                return Started(None, None)
        summary = await self.read(self.index.summary, saga_id) or {}
        status = SagaStatus(summary["status"]) if summary.get("status") else None
        return Started(await self.read(self.index.started_by, saga_id) == ours, status)

    async def send(self, saga_id: str, value: Input) -> None:
        await asyncio.to_thread(self.inbox.deliver, saga_id, value)
