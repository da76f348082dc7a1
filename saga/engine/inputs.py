"""The inputs a saga reacts to, as the engine sees them (decoded from saga.inbox)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class ReplyOutcome(StrEnum):
    OK = "OK"
    BUSINESS_ERROR = "BUSINESS_ERROR"  # never retried: the saga sees StepFailed at once
    TECHNICAL_ERROR = "TECHNICAL_ERROR"  # retried per the step's RetryPolicy


@dataclass(frozen=True)
class StartSaga:
    saga_type: str
    input: Any
    #: The W3C traceparent of whoever started it ("" when untraced): the saga's trace
    #: hangs under it.
    trace: str = ""
    #: For a child saga, its parent and the parent's step that started it.
    parent: str = ""
    parent_step: int = -1


@dataclass(frozen=True)
class DeliverSignal:
    name: str
    payload: Any


@dataclass(frozen=True)
class CancelSaga:
    reason: str


@dataclass(frozen=True)
class ResumeSaga:
    """An operator's way out of PARKED: replay the saga with the code now deployed."""

    reason: str


@dataclass(frozen=True)
class AbandonSaga:
    """An operator's way out of PARKED (or any running state): end the saga FAILED,
    after compensating what it did when ``compensate``."""

    reason: str
    compensate: bool


@dataclass(frozen=True)
class CommandReply:
    command_id: str
    service: str
    outcome: ReplyOutcome
    result: Any
    error: str


@dataclass(frozen=True)
class ChildFinished:
    """A child saga ended: sent to its parent by the coordinator that decided the end."""

    child_id: str
    status: str
    result: Any
    error: str


@dataclass(frozen=True)
class UpdateSaga:
    """A request for the running saga to compute and return a value (an update)."""

    update_id: str
    name: str
    payload: Any


@dataclass(frozen=True)
class FireTimer:
    timer_id: str
    due_ms: int


Input = (StartSaga | DeliverSignal | CancelSaga | CommandReply | FireTimer | ResumeSaga
         | AbandonSaga | ChildFinished | UpdateSaga)
