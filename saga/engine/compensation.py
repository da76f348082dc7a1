"""Compensation: which move comes next, a pure function of the saga's state, and the one
place that makes it (for ``ctx.compensate()`` and for the engine compensating on its own
after a failure or a cancel).

Compensations run one at a time, newest completed action first. Actions still in flight
are waited for first, since one may yet succeed and need undoing. A failed compensation
is issued again (a new attempt) after a durable pause, until it succeeds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from saga.engine import events as ev
from saga.engine.ids import command_id, idempotency_key, timer_id
from saga.engine.recorder import Emitter
from saga.engine.state import SagaState, Step, StepOutcome, TimerStatus
from saga.engine.workflow import RetryPolicy, due_ms


@dataclass(frozen=True)
class Wait:
    pass


@dataclass(frozen=True)
class Issue:
    action: Step
    attempt: int

    def command(self, saga_id: str, deadline_ms: int = 0) -> ev.CommandIssued:
        """The compensation command; its handler receives the action's input, result,
        command id and idempotency key (what undoing it needs to find). Past
        ``deadline_ms`` (0: never) the attempt counts as failed and is tried again, so a
        compensation whose reply never comes cannot hold the saga."""
        action = self.action
        assert action.compensate is not None
        service, name = action.compensate
        body: dict[str, Any] = {"input": action.input, "result": action.result,
                                "command_id": action.command_id,
                                "idempotency_key": idempotency_key(action.command_id)}
        kind = ev.CommandKind.COMPENSATION
        return ev.CommandIssued(action.step, command_id(saga_id, action.step, kind,
                                                        self.attempt),
                                service, name, kind, self.attempt, body,
                                deadline_ms=deadline_ms)


@dataclass(frozen=True)
class Schedule:
    """Wait before the next attempt of a failed compensation."""

    timer_id: str
    step: int
    due_ms: int

    def event(self) -> ev.TimerScheduled:
        return ev.TimerScheduled(self.timer_id, self.step, ev.TimerPurpose.COMPENSATION_RETRY,
                                 self.due_ms)


@dataclass(frozen=True)
class Done:
    pass


Next = Wait | Issue | Schedule | Done


def next_compensation(state: SagaState, before_step: int | None, policy: RetryPolicy,
                      now_ms: int) -> Next:
    """The next move for compensating the actions issued before ``before_step`` (all if
    None). A failed compensation is tried again after ``policy``'s backoff, forever."""
    covered = [s for s in state.steps.values()
               if s.compensate is not None and (before_step is None or s.step < before_step)]
    if any(s.outcome is None for s in covered):
        return Wait()
    succeeded = sorted((s for s in covered if s.outcome is StepOutcome.OK),
                       key=lambda s: s.completed_order, reverse=True)
    for action in succeeded:
        done = state.compensations.get(action.step)
        if done is None:
            return Issue(action, 1)
        if done.outcome is None:
            return Wait()
        if done.outcome is StepOutcome.FAILED:
            attempt = done.attempt + 1
            pause = timer_id(state.saga_id, action.step, ev.TimerPurpose.RETRY, attempt,
                             compensation=True)
            timer = state.timer(pause)
            if timer is None:
                return Schedule(pause, action.step,
                                due_ms(now_ms, policy.delay_before(attempt)))
            if timer.status is not TimerStatus.FIRED:
                return Wait()
            return Issue(action, attempt)
    return Done()


def advance_compensation(journal: Emitter, before_step: int | None, finished_step: int,
                         policy: RetryPolicy, timeout: timedelta | None) -> bool:
    """Make the next move; True once everything is compensated, when
    ``CompensationFinished(finished_step)`` has been emitted. Each attempt of a
    compensation waits at most ``timeout`` (None: for ever) for its reply."""
    move = next_compensation(journal.state, before_step, policy, journal.now_ms)
    match move:
        case Issue():
            deadline = due_ms(journal.now_ms, timeout) if timeout is not None else 0
            journal.emit(move.command(journal.state.saga_id, deadline))
        case Schedule():
            journal.emit(move.event())
        case Done():
            journal.emit(ev.CompensationFinished(finished_step))
            return True
    return False
