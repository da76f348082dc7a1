"""Journal events: frozen dataclasses, one per fact a saga can record.

Every event is JSON-serialisable through `to_body` / `from_body`; the journal envelope
(schemas/journal_event.*.avsc) carries the type name, the saga's sequence number and
the time. Outbound messages (commands) are derived from these events, never stored
apart from them: the journal alone says what was sent.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from saga.errors import CodecError

ACTION = "ACTION"
COMPENSATION = "COMPENSATION"


@dataclass(frozen=True)
class Event:
    type_name: ClassVar[str] = ""

    def to_body(self) -> dict[str, Any]:
        # Shallow on purpose: field values are already JSON-shaped, and asdict's deep
        # copy was the coordinator's biggest cost. orjson serialises events directly.
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


@dataclass(frozen=True)
class SagaStarted(Event):
    saga_type: str
    version: int
    input: Any


@dataclass(frozen=True)
class CommandIssued(Event):
    step: int
    command_id: str
    service: str
    name: str
    kind: str  # ACTION, or COMPENSATION of the action at `step`
    attempt: int
    input: Any
    compensate: tuple[str, str] | None = None  # the registered compensation of an action


@dataclass(frozen=True)
class CommandCompleted(Event):
    command_id: str
    step: int
    kind: str
    result: Any


@dataclass(frozen=True)
class CommandFailed(Event):
    command_id: str
    step: int
    kind: str
    reason: str
    business: bool  # a BusinessError: never retried


@dataclass(frozen=True)
class ValueRecorded(Event):
    """ctx.now(), ctx.random(), ctx.uuid(): recorded so a replay sees the same value."""

    step: int
    what: str
    value: Any


@dataclass(frozen=True)
class SignalReceived(Event):
    name: str
    payload: Any


@dataclass(frozen=True)
class WaitStarted(Event):
    step: int
    signal: str


@dataclass(frozen=True)
class WaitResolved(Event):
    step: int
    signal_index: int  # which SignalReceived (0-based, in arrival order) answered it


@dataclass(frozen=True)
class CommandTimedOut(Event):
    """No reply within the step's timeout: the attempt failed (a technical failure)."""

    command_id: str
    step: int


@dataclass(frozen=True)
class WaitTimedOut(Event):
    step: int


@dataclass(frozen=True)
class TimerScheduled(Event):
    """A durable timer: saga.timers holds it until it fires or is cancelled."""

    timer_id: str
    step: int
    purpose: str  # timeout, retry, wait, sleep, compensation_retry
    due_ms: int


@dataclass(frozen=True)
class TimerCancelled(Event):
    timer_id: str


@dataclass(frozen=True)
class TimerFired(Event):
    timer_id: str


@dataclass(frozen=True)
class CompensationStarted(Event):
    step: int  # the ctx.compensate() step, or -1 when the engine compensates on its own
    reason: str


@dataclass(frozen=True)
class CompensationFinished(Event):
    step: int


@dataclass(frozen=True)
class CancelRequested(Event):
    reason: str


@dataclass(frozen=True)
class WorkflowFailed(Event):
    """The workflow function raised; its compensations run next."""

    error: str


@dataclass(frozen=True)
class InputIgnored(Event):
    """An input that needs no action: a duplicate or late reply, a signal too late."""

    reason: str
    detail: str


@dataclass(frozen=True)
class SagaCompleted(Event):
    result: Any
    compensated: bool


@dataclass(frozen=True)
class SagaFailed(Event):
    error: str


@dataclass(frozen=True)
class SagaCancelled(Event):
    reason: str


@dataclass(frozen=True)
class SagaParked(Event):
    reason: str  # non_determinism, foreign_awaitable, unknown_workflow
    detail: str


EVENT_TYPES: dict[str, type[Event]] = {}
for _cls in (SagaStarted, CommandIssued, CommandCompleted, CommandFailed, ValueRecorded,
             SignalReceived, WaitStarted, WaitResolved, CommandTimedOut, WaitTimedOut,
             TimerScheduled, TimerCancelled, TimerFired, CompensationStarted,
             CompensationFinished, CancelRequested, WorkflowFailed, InputIgnored,
             SagaCompleted, SagaFailed, SagaCancelled, SagaParked):
    _cls.type_name = _cls.__name__
    EVENT_TYPES[_cls.__name__] = _cls


def from_body(type_name: str, body: dict[str, Any]) -> Event:
    cls = EVENT_TYPES.get(type_name)
    if cls is None:
        raise CodecError(f"unknown journal event type {type_name!r}",
                         hint="written by a newer kafka-saga; upgrade this one")
    try:
        if cls is CommandIssued and body.get("compensate") is not None:
            body = {**body, "compensate": tuple(body["compensate"])}
        return cls(**body)
    except TypeError as exc:
        raise CodecError(f"journal event {type_name} does not fit: {exc}") from exc


@dataclass(frozen=True)
class Entry:
    """An event as the journal holds it: in the saga's order, with its time."""

    saga_id: str
    seq: int
    at_ms: int
    event: Event
