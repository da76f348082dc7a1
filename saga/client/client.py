"""The Python client: start sagas, send them signals, and read their status, history
and result, from any machine.

    async with SagaClient("127.0.0.1:29092") as client:
        handle = await client.start("order", "o-1", order)
        result = await handle.result(timeout=60)

``BlockingSagaClient`` is the same for scripts and non-async web frameworks. Either
needs only the Kafka bootstrap servers, or only the URL of `saga server` (``api_url``),
which answers reads from its index instead of folding the journal per call.
"""

from __future__ import annotations

import asyncio
import builtins
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TypeVar

from saga.client.backends import Backend, HttpBackend, KafkaBackend
from saga.config import Settings
from saga.engine.inputs import AbandonSaga, CancelSaga, DeliverSignal, ResumeSaga, UpdateSaga
from saga.engine.lifecycle import SagaStatus
from saga.engine.schedule import (
    CONTROL_SIGNAL,
    SCHEDULE_TYPE,
    Control,
    ScheduleSpec,
    schedule_saga_id,
)
from saga.errors import (
    SagaStillRunning,
    UpdateRefused,
    UpdateTimedOut,
    did_not_complete,
)
from saga.kafka.inbox import check_saga_id
from saga.store.visibility import ListQuery

_T = TypeVar("_T")
When = datetime | int | None  # a datetime, or epoch milliseconds
#: What a bulk operation does to each saga it selects.
Bulk = Literal["cancel", "signal", "resume"]


@dataclass(frozen=True)
class SagaInfo:
    """A saga as `saga status --json` shows it."""

    saga_id: str
    type: str
    version: int
    status: SagaStatus | None
    result: Any
    error: str | None
    last_error: str | None
    events: int
    started_at_ms: int
    updated_at_ms: int
    ended_at_ms: int | None
    waiting_for: tuple[str, ...]
    in_flight: int
    parent: str | None = None  # the saga that started this one as its child
    children: tuple[str, ...] = ()
    attributes: dict[str, Any] = field(default_factory=dict)  # ctx.set_attributes
    run: int = 0  # continue-as-new: which run of the saga this is (the first is 0)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def of(cls, summary: dict[str, Any]) -> SagaInfo:
        return cls(summary["saga_id"], summary["type"], summary["version"],
                   SagaStatus(summary["status"]) if summary["status"] else None,
                   summary["result"], summary["error"], summary["last_error"],
                   summary["events"], summary["started_at_ms"], summary["updated_at_ms"],
                   summary["ended_at_ms"], tuple(summary["waiting_for"]),
                   summary["in_flight"], summary.get("parent"),
                   tuple(summary.get("children") or ()), summary.get("attributes") or {},
                   summary.get("run", 0), summary)

    @property
    def done(self) -> bool:
        return self.status is not None and self.status.terminal


@dataclass(frozen=True)
class SagaPage:
    sagas: list[SagaInfo]
    #: Pass to ``list(cursor=...)`` for the next page; None on the last.
    next_cursor: str | None


class BlockingSagaClient:
    def __init__(self, bootstrap_servers: str | None = None, *, api_url: str | None = None,
                 topic_prefix: str | None = None, settings: Settings | None = None) -> None:
        """Flags beat ``SAGA_*`` variables (SAGA_BOOTSTRAP_SERVERS, SAGA_API_URL,
        SAGA_TOPIC_PREFIX), as everywhere. With an API URL every call goes through the
        API; without one, through Kafka."""
        chosen = settings or Settings.from_env(bootstrap_servers=bootstrap_servers,
                                               api_url=api_url, topic_prefix=topic_prefix)
        self.settings = chosen
        self._backend: Backend = HttpBackend.of(chosen) if chosen.api_url \
            else KafkaBackend(chosen)

    def start(self, saga_type: str, saga_id: str, saga_input: Any = None, *,
              wait_s: float = 10.0) -> BlockingSagaHandle:
        """Start a saga; a second start of the same id never starts a second saga.
        ``handle.created`` says whether this call started it (None when it was not yet
        visible after ``wait_s``: no coordinator running?)."""
        check_saga_id(saga_id)
        created = self._backend.start(saga_type, saga_id, saga_input, wait_s)
        return BlockingSagaHandle(self, saga_id, created)

    def handle(self, saga_id: str) -> BlockingSagaHandle:
        return BlockingSagaHandle(self, saga_id, None)

    def signal(self, saga_id: str, name: str, payload: Any = None) -> None:
        self._backend.send(saga_id, DeliverSignal(name, payload))

    def cancel(self, saga_id: str, reason: str = "cancelled by a client") -> None:
        """Stop the saga and compensate what it did; it ends CANCELLED."""
        self._backend.send(saga_id, CancelSaga(reason))

    def resume(self, saga_id: str, reason: str = "resumed by a client") -> None:
        """Replay a PARKED saga with the code now deployed."""
        self._backend.send(saga_id, ResumeSaga(reason))

    def abandon(self, saga_id: str, reason: str = "abandoned by a client", *,
                compensate: bool = False) -> None:
        self._backend.send(saga_id, AbandonSaga(reason, compensate))

    def status(self, saga_id: str) -> SagaInfo:
        """Raises SagaNotFound for an unknown id."""
        return SagaInfo.of(self._backend.summary(saga_id))

    def history(self, saga_id: str) -> list[dict[str, Any]]:
        """The journal entries in order, each with its ``type`` (as `saga history`)."""
        return self._backend.history(saga_id)

    def list(self, *, status: SagaStatus | str | None = None, type: str | None = None,
             id_prefix: str | None = None, started_after: When = None,
             started_before: When = None, ended_after: When = None, ended_before: When = None,
             version: int | None = None, attributes: dict[str, Any] | None = None,
             limit: int = 100, cursor: str | None = None) -> SagaPage:
        """Newest first (in id order with ``id_prefix``); ``attributes`` are those set with
        ctx.set_attributes, each of which must match."""
        listing = self._backend.listing(self._query(
            status=status, type=type, id_prefix=id_prefix, started_after=started_after,
            started_before=started_before, ended_after=ended_after, ended_before=ended_before,
            version=version, attributes=attributes, limit=limit, cursor=cursor))
        return SagaPage([SagaInfo.of(s) for s in listing.summaries], listing.next_cursor)

    def select(self, **filters: Any) -> builtins.list[str]:
        """The ids of every saga the filters of ``list`` take (page after page)."""
        ids: builtins.list[str] = []
        cursor = None
        while True:
            listing = self._backend.listing(self._query(**filters, limit=1000, cursor=cursor))
            ids.extend(s["saga_id"] for s in listing.summaries)
            cursor = listing.next_cursor
            if cursor is None:
                return ids

    def bulk(self, action: Bulk, *, dry_run: bool = False, name: str = "",
             payload: Any = None, reason: str = "", **filters: Any) -> builtins.list[str]:
        """Cancel, signal (``name``, ``payload``) or resume every saga the filters take;
        the ids touched, or that would be with ``dry_run``."""
        ids = self.select(**filters)
        if not dry_run:
            for saga_id in ids:
                if action == "cancel":
                    self.cancel(saga_id, reason or "cancelled in bulk")
                elif action == "signal":
                    self.signal(saga_id, name, payload)
                else:
                    self.resume(saga_id, reason or "resumed in bulk")
        return ids

    def update(self, saga_id: str, name: str, payload: Any = None, *,
               timeout: float = 30.0, update_id: str | None = None) -> Any:
        """Ask the running saga to compute a value (its ``ctx.on_update(name, ...)``
        handler): the value. UpdateRefused when the saga refuses it (validator, no such
        handler, ended); UpdateTimedOut when no answer came (sending the same
        ``update_id`` again applies it at most once)."""
        chosen = update_id or uuid.uuid4().hex
        answer = self._backend.update(saga_id, UpdateSaga(chosen, name, payload), timeout)
        if answer is None:
            raise UpdateTimedOut(f"update {name!r} of saga {saga_id}: no answer in "
                                 f"{timeout:g}s", hint="check that a coordinator runs; send "
                                 f"it again with update_id={chosen!r}")
        if "error" in answer:
            raise UpdateRefused(f"saga {saga_id} refused update {name!r}: {answer['error']}")
        return answer["result"]

    # ---- schedules -----------------------------------------------------------------
    def create_schedule(self, schedule_id: str, *, cron: str, saga_type: str,
                        input: Any = None, timezone: str = "UTC",
                        overlap: str = "skip", catchup_window_s: float = 60.0,
                        wait_s: float = 10.0) -> bool | None:
        """A schedule that starts ``saga_type`` on ``cron`` (a saga of its own,
        ``schedule:<id>``); whether this call created it (False: it was there)."""
        spec = ScheduleSpec.of({"schedule_id": schedule_id, "cron": cron,
                                "saga_type": saga_type, "input": input, "timezone": timezone,
                                "overlap": overlap, "catchup_window_s": catchup_window_s})
        return self._backend.start(SCHEDULE_TYPE, schedule_saga_id(schedule_id),
                                   {"spec": spec.to_json()}, wait_s)

    def schedules(self) -> builtins.list[dict[str, Any]]:
        """Every schedule: its spec, paused, runs, last and next slot, last run."""
        return self._backend.schedules()

    def control_schedule(self, schedule_id: str, op: Control | str) -> None:
        """pause, resume, trigger (a run now) or delete a schedule."""
        self.signal(schedule_saga_id(schedule_id), CONTROL_SIGNAL, {"op": Control(op).value})

    @staticmethod
    def _query(*, status: SagaStatus | str | None = None, type: str | None = None,
               id_prefix: str | None = None, started_after: When = None,
               started_before: When = None, ended_after: When = None,
               ended_before: When = None, version: int | None = None,
               attributes: dict[str, Any] | None = None, limit: int = 100,
               cursor: str | None = None) -> ListQuery:
        return ListQuery(SagaStatus(str(status).upper()) if status else None, type, id_prefix,
                         _ms(started_after), _ms(started_before), _ms(ended_after),
                         _ms(ended_before), limit, cursor, version, attributes)

    def result(self, saga_id: str, timeout: float = 60.0) -> Any:
        """Wait for the saga to end: the result of a COMPLETED saga. SagaCompensated,
        SagaFailed or SagaCancelled (all SagaDidNotComplete) for the other endings, with
        the status and reason; SagaStillRunning once ``timeout`` seconds pass."""
        info = SagaInfo.of(self._backend.wait_ended(saga_id, timeout))
        if not info.done:
            raise SagaStillRunning(saga_id, info.status.value if info.status else None,
                                   timeout)
        if info.status is SagaStatus.COMPLETED:
            return info.result
        assert info.status is not None
        raise did_not_complete(saga_id, info.status.value, info.error or "", info.result)

    def close(self) -> None:
        self._backend.close()

    def __enter__(self) -> BlockingSagaClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class BlockingSagaHandle:
    client: BlockingSagaClient
    saga_id: str
    #: Whether the start that made this handle created the saga (None: unknown).
    created: bool | None

    def result(self, timeout: float = 60.0) -> Any:
        return self.client.result(self.saga_id, timeout)

    def status(self) -> SagaInfo:
        return self.client.status(self.saga_id)

    def history(self) -> list[dict[str, Any]]:
        return self.client.history(self.saga_id)

    def signal(self, name: str, payload: Any = None) -> None:
        self.client.signal(self.saga_id, name, payload)

    def cancel(self, reason: str = "cancelled by a client") -> None:
        self.client.cancel(self.saga_id, reason)


class SagaClient:
    """The asyncio client; every call runs its blocking twin's in a worker thread, so the
    event loop is never held by Kafka or HTTP."""

    def __init__(self, bootstrap_servers: str | None = None, *, api_url: str | None = None,
                 topic_prefix: str | None = None, settings: Settings | None = None) -> None:
        self.blocking = BlockingSagaClient(bootstrap_servers, api_url=api_url,
                                           topic_prefix=topic_prefix, settings=settings)

    async def start(self, saga_type: str, saga_id: str, saga_input: Any = None, *,
                    wait_s: float = 10.0) -> SagaHandle:
        started = await _off_loop(self.blocking.start, saga_type, saga_id, saga_input,
                                  wait_s=wait_s)
        return SagaHandle(self, saga_id, started.created)

    def handle(self, saga_id: str) -> SagaHandle:
        return SagaHandle(self, saga_id, None)

    async def signal(self, saga_id: str, name: str, payload: Any = None) -> None:
        await _off_loop(self.blocking.signal, saga_id, name, payload)

    async def cancel(self, saga_id: str, reason: str = "cancelled by a client") -> None:
        await _off_loop(self.blocking.cancel, saga_id, reason)

    async def resume(self, saga_id: str, reason: str = "resumed by a client") -> None:
        await _off_loop(self.blocking.resume, saga_id, reason)

    async def abandon(self, saga_id: str, reason: str = "abandoned by a client", *,
                      compensate: bool = False) -> None:
        await _off_loop(self.blocking.abandon, saga_id, reason, compensate=compensate)

    async def status(self, saga_id: str) -> SagaInfo:
        return await _off_loop(self.blocking.status, saga_id)

    async def history(self, saga_id: str) -> list[dict[str, Any]]:
        return await _off_loop(self.blocking.history, saga_id)

    async def list(self, **filters: Any) -> SagaPage:
        """The same filters as ``BlockingSagaClient.list``."""
        return await _off_loop(self.blocking.list, **filters)

    async def bulk(self, action: Bulk, **options: Any) -> builtins.list[str]:
        return await _off_loop(self.blocking.bulk, action, **options)

    async def update(self, saga_id: str, name: str, payload: Any = None, *,
                     timeout: float = 30.0, update_id: str | None = None) -> Any:
        return await _off_loop(self.blocking.update, saga_id, name, payload, timeout=timeout,
                               update_id=update_id)

    async def create_schedule(self, schedule_id: str, **spec: Any) -> bool | None:
        return await _off_loop(self.blocking.create_schedule, schedule_id, **spec)

    async def schedules(self) -> builtins.list[dict[str, Any]]:
        return await _off_loop(self.blocking.schedules)

    async def control_schedule(self, schedule_id: str, op: Control | str) -> None:
        await _off_loop(self.blocking.control_schedule, schedule_id, op)

    async def result(self, saga_id: str, timeout: float = 60.0) -> Any:
        return await _off_loop(self.blocking.result, saga_id, timeout)

    async def close(self) -> None:
        await _off_loop(self.blocking.close)

    async def __aenter__(self) -> SagaClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


@dataclass(frozen=True)
class SagaHandle:
    client: SagaClient
    saga_id: str
    created: bool | None

    async def result(self, timeout: float = 60.0) -> Any:
        return await self.client.result(self.saga_id, timeout)

    async def status(self) -> SagaInfo:
        return await self.client.status(self.saga_id)

    async def history(self) -> list[dict[str, Any]]:
        return await self.client.history(self.saga_id)

    async def signal(self, name: str, payload: Any = None) -> None:
        await self.client.signal(self.saga_id, name, payload)

    async def cancel(self, reason: str = "cancelled by a client") -> None:
        await self.client.cancel(self.saga_id, reason)


async def _off_loop(call: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
    return await asyncio.to_thread(call, *args, **kwargs)


def _ms(value: When) -> int | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    return int(value)
