"""Journal events: frozen dataclasses, one per fact a saga can record.

Every event is JSON-serialisable through `to_body` / `from_body`; the journal envelope
(schemas/journal_event.*.avsc) carries the type name, the saga's sequence number and
the time. Outbound messages (commands) are derived from these events, never stored
apart from them: the journal alone says what was sent.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar

from saga.errors import CodecError


class CommandKind(StrEnum):
    ACTION = "ACTION"  # a step of the workflow
    COMPENSATION = "COMPENSATION"  # the undo of the action at the same step


class TimerPurpose(StrEnum):
    TIMEOUT = "timeout"  # a step's reply deadline
    RETRY = "retry"  # the pause before the next attempt of a step or compensation
    WAIT = "wait"  # a wait_signal deadline
    SLEEP = "sleep"  # ctx.sleep()
    COMPENSATION_RETRY = "compensation_retry"


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
    trace: str = ""  # the starter's W3C traceparent, for the saga's trace
    parent: str = ""  # a child saga's parent
    parent_step: int = -1  # the parent's step that started it


@dataclass(frozen=True)
class CommandIssued(Event):
    step: int
    command_id: str
    service: str
    name: str
    kind: CommandKind
    attempt: int
    input: Any
    compensate: tuple[str, str] | None = None  # the registered compensation of an action
    #: When this attempt times out (epoch ms; 0: never). Held in the saga's state and
    #: swept by the coordinator's timer wheel: a step deadline costs no journal entry
    #: and no saga.timers record of its own. Journals written before it have a
    #: TimerScheduled(purpose=timeout) per attempt instead, still honoured.
    deadline_ms: int = 0


@dataclass(frozen=True)
class CommandCompleted(Event):
    command_id: str
    step: int
    kind: CommandKind
    result: Any


@dataclass(frozen=True)
class CommandFailed(Event):
    command_id: str
    step: int
    kind: CommandKind
    reason: str
    business: bool  # a BusinessError: never retried


@dataclass(frozen=True)
class ChildStarted(Event):
    """ctx.child(): the saga starts a child saga, its own id, journal and partition."""

    step: int
    child_id: str
    saga_type: str
    input: Any


@dataclass(frozen=True)
class ChildEnded(Event):
    step: int
    child_id: str
    status: str  # the child's terminal status
    result: Any
    error: str


@dataclass(frozen=True)
class ChildCancelRequested(Event):
    """The saga was cancelled (or abandoned): so is each child still running."""

    step: int
    child_id: str


@dataclass(frozen=True)
class PatchMarked(Event):
    """ctx.patched(name) took the new branch where the code reached new ground."""

    name: str


@dataclass(frozen=True)
class AttributesSet(Event):
    """ctx.set_attributes(): searchable attributes, merged into the saga's."""

    step: int
    attributes: dict[str, Any]


@dataclass(frozen=True)
class UpdateApplied(Event):
    """An update's handler ran at ``step`` (the next step number at the time) and
    returned ``result``; on replay it runs there again."""

    update_id: str
    name: str
    payload: Any
    step: int
    result: Any


@dataclass(frozen=True)
class UpdateRejected(Event):
    update_id: str
    name: str
    error: str


@dataclass(frozen=True)
class SagaContinued(Event):
    """ctx.continue_as_new(): this run ends and a fresh one begins, same saga id, the
    history of the old run left behind."""

    input: Any
    version: int
    run: int  # the new run's number (the first run is 0)
    #: the new run's first step: step numbers go on across runs, so the ids of its
    #: commands, timers and children never repeat an old run's (services deduplicate)
    first_step: int = 0


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
    """No reply within the step's timeout: the attempt failed (a technical failure).
    A compensation that times out is tried again, like one that failed."""

    command_id: str
    step: int
    kind: CommandKind = CommandKind.ACTION  # journals before compensation deadlines: ACTION


@dataclass(frozen=True)
class WaitTimedOut(Event):
    step: int


@dataclass(frozen=True)
class TimerScheduled(Event):
    """A durable timer: saga.timers holds it until it fires or is cancelled."""

    timer_id: str
    step: int
    purpose: TimerPurpose
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
class SagaResumed(Event):
    """An operator resumed a PARKED saga: it replays with the code now deployed."""

    reason: str


@dataclass(frozen=True)
class AbandonRequested(Event):
    """An operator gave up on the saga: it ends FAILED, after compensating what it did
    when ``compensate``."""

    reason: str
    compensate: bool


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


class ParkReason(StrEnum):
    NON_DETERMINISM = "non_determinism"  # the code took another path than the journal
    FOREIGN_AWAITABLE = "foreign_awaitable"  # the workflow awaited something not ctx.*
    UNKNOWN_WORKFLOW = "unknown_workflow"  # its type and version are not registered
    BUDGET_EXCEEDED = "budget_exceeded"  # too many events or commands, too long, too big
    WORKFLOW_BUG = "workflow_bug"  # it raised a BaseException (SystemExit, CancelledError)
    UNENCODABLE = "unencodable"  # what it decided could not be written to the journal


@dataclass(frozen=True)
class SagaParked(Event):
    reason: ParkReason
    detail: str


EVENT_TYPES: dict[str, type[Event]] = {}
for _cls in (SagaStarted, CommandIssued, CommandCompleted, CommandFailed, ValueRecorded,
             SignalReceived, WaitStarted, WaitResolved, CommandTimedOut, WaitTimedOut,
             TimerScheduled, TimerCancelled, TimerFired, CompensationStarted,
             CompensationFinished, CancelRequested, WorkflowFailed, InputIgnored,
             SagaCompleted, SagaFailed, SagaCancelled, SagaParked, SagaResumed,
             AbandonRequested, ChildStarted, ChildEnded, ChildCancelRequested, PatchMarked,
             AttributesSet, UpdateApplied, UpdateRejected, SagaContinued):
    _cls.type_name = _cls.__name__
    EVENT_TYPES[_cls.__name__] = _cls


#: Fields JSON cannot carry as their own type, converted back when an event is read.
_FIELD_TYPES: dict[type[Event], dict[str, Any]] = {
    CommandIssued: {"compensate": tuple, "kind": CommandKind},
    CommandCompleted: {"kind": CommandKind},
    CommandFailed: {"kind": CommandKind},
    CommandTimedOut: {"kind": CommandKind},
    TimerScheduled: {"purpose": TimerPurpose},
    SagaParked: {"reason": ParkReason},
}


#: Each event type's field names: a body naming exactly these needs no defaults filled.
_FIELD_NAMES: dict[type[Event], frozenset[str]] = {
    cls: frozenset(f.name for f in dataclasses.fields(cls)) for cls in EVENT_TYPES.values()}


def from_body(type_name: str, body: dict[str, Any]) -> Event:
    cls = EVENT_TYPES.get(type_name)
    if cls is None:
        raise CodecError(f"unknown journal event type {type_name!r}",
                         hint="written by a newer kafka-saga; upgrade this one")
    try:
        typed = _FIELD_TYPES.get(cls)
        if typed is not None:
            body = {**body, **{name: convert(body[name]) for name, convert in typed.items()
                               if body.get(name) is not None}}
        if body.keys() == _FIELD_NAMES[cls]:
            # What this version writes: every field, none unknown. Set as _evolve sets a
            # state's, without the frozen __init__'s setattr per field (a rebuild reads
            # every entry of the journal through here).
            event = object.__new__(cls)
            event.__dict__.update(body)
            return event
        return cls(**body)  # fills defaults; refuses a missing or unknown field
    except (TypeError, ValueError) as exc:
        raise CodecError(f"journal event {type_name} does not fit: {exc}") from exc


@dataclass(frozen=True)
class Entry:
    """An event as the journal holds it: in the saga's order, with its time."""

    saga_id: str
    seq: int
    at_ms: int
    event: Event

    def row(self) -> dict[str, Any]:
        """The entry as `saga history --json` and the HTTP API show it."""
        return {"seq": self.seq, "at_ms": self.at_ms, "type": self.event.type_name,
                **self.event.to_body()}
