"""The inputs a saga reacts to, as the engine sees them (decoded from saga.inbox)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class StartSaga:
    saga_type: str
    input: Any


@dataclass(frozen=True)
class DeliverSignal:
    name: str
    payload: Any


@dataclass(frozen=True)
class CancelSaga:
    reason: str


@dataclass(frozen=True)
class CommandReply:
    command_id: str
    service: str
    outcome: str  # OK, BUSINESS_ERROR, TECHNICAL_ERROR
    result: Any
    error: str


@dataclass(frozen=True)
class FireTimer:
    timer_id: str
    due_ms: int


Input = StartSaga | DeliverSignal | CancelSaga | CommandReply | FireTimer
