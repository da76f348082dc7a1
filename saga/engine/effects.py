"""What a saga's journal entries cause outside its own journal: the one place that says
so. The coordinator's outbox turns each effect into a Kafka record in the decision's
transaction; saga.testing carries the same effects out in memory, so a test sees the
commands, timers, child starts and notices a coordinator would send.

- ``CommandIssued``: the command, to its service (``SendCommand``).
- ``TimerScheduled`` / ``TimerCancelled``: a durable timer starts or stops. A step's
  reply deadline is not one: it is held in the saga's state (``SagaState.deadlines``).
- ``ChildStarted``: the child's start, to the child; ``ChildCancelRequested``: its
  cancel; the end of a child saga: a ``ChildFinished`` notice, to its parent.
- A schedule saga's ``schedule`` attribute, and its end: the schedule catalog's entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from saga.engine import events as ev
from saga.engine.inputs import CancelSaga, ChildFinished, Input, StartSaga
from saga.engine.schedule import SCHEDULE_TYPE
from saga.engine.state import SagaState

ENDINGS = (ev.SagaCompleted, ev.SagaFailed, ev.SagaCancelled)


@dataclass(frozen=True)
class SendCommand:
    """A command to ``event.service``, issued by the saga at ``at_ms``."""

    event: ev.CommandIssued
    at_ms: int


@dataclass(frozen=True)
class StartTimer:
    event: ev.TimerScheduled


@dataclass(frozen=True)
class StopTimer:
    """A timer cancelled before it fired."""

    timer_id: str


@dataclass(frozen=True)
class SendToSaga:
    """An input for another saga (a child's start or cancel, a parent's notice), sent in
    the same transaction as the decision: exactly once. ``message_id`` names it."""

    saga_id: str
    input: Input
    message_id: str


@dataclass(frozen=True)
class PublishSchedule:
    """The schedule catalog's entry of ``schedule_id``: what its saga publishes, or None
    once it has ended (however it ended, it schedules no more)."""

    schedule_id: str
    published: Any
    at_ms: int


Effect = SendCommand | StartTimer | StopTimer | SendToSaga | PublishSchedule

_NONE: tuple[Effect, ...] = ()
#: Events with an effect whoever the saga is (a child's end and a schedule's attributes
#: have theirs only for a child or a schedule).
_OWN_EFFECTS = frozenset({ev.CommandIssued, ev.TimerScheduled, ev.TimerCancelled,
                          ev.ChildStarted, ev.ChildCancelRequested})


def effects_of(state: SagaState, entry: ev.Entry) -> tuple[Effect, ...]:
    """What ``entry`` causes beyond the journal; ``state``: the saga's state after the
    decision that wrote it (a child's notice carries its end). Most entries cause
    nothing, and that costs no allocation: the coordinator asks for every entry."""
    event = entry.event
    if type(event) not in _OWN_EFFECTS and not state.parent \
            and state.saga_type != SCHEDULE_TYPE:
        return _NONE
    found: Effect | None = None
    if isinstance(event, ev.CommandIssued):
        found = SendCommand(event, entry.at_ms)
    elif isinstance(event, ev.TimerScheduled):
        found = StartTimer(event)
    elif isinstance(event, ev.TimerCancelled):
        found = StopTimer(event.timer_id)
    elif isinstance(event, ev.ChildStarted):
        found = SendToSaga(event.child_id, StartSaga(
            event.saga_type, event.input, parent=state.saga_id, parent_step=event.step),
            f"child:{event.child_id}")
    elif isinstance(event, ev.ChildCancelRequested):
        found = SendToSaga(event.child_id,
                           CancelSaga(f"its parent {state.saga_id} was cancelled"),
                           f"cancel-child:{event.child_id}")
    elif state.parent and isinstance(event, ENDINGS):
        found = SendToSaga(state.parent, ChildFinished(
            state.saga_id, state.status.value if state.status else "", state.result,
            state.error), f"child-ended:{state.saga_id}:{state.run}")
    published: PublishSchedule | None = None
    if state.saga_type == SCHEDULE_TYPE:
        schedule_id = state.saga_id.removeprefix("schedule:")
        if isinstance(event, ev.AttributesSet) and "schedule" in event.attributes:
            published = PublishSchedule(schedule_id, event.attributes["schedule"],
                                        entry.at_ms)
        elif isinstance(event, ENDINGS):
            published = PublishSchedule(schedule_id, None, entry.at_ms)
    if found is None:
        return _NONE if published is None else (published,)
    return (found,) if published is None else (found, published)
