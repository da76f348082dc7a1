"""Which compensation to run next: a pure function of the saga's state.

Compensations run one at a time, newest completed action first. Actions still in flight
are waited for first, since one may yet succeed and need undoing. A failed compensation
is issued again (a new attempt) until it succeeds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from saga.engine import events as ev
from saga.engine.ids import command_id, timer_id
from saga.engine.state import SagaState, Step
from saga.engine.workflow import RetryPolicy


@dataclass(frozen=True)
class Wait:
    pass


@dataclass(frozen=True)
class Issue:
    action: Step
    attempt: int

    def command(self, saga_id: str) -> ev.CommandIssued:
        """The compensation command; its handler receives the action's input and result."""
        action = self.action
        assert action.compensate is not None
        service, name = action.compensate
        body: dict[str, Any] = {"input": action.input, "result": action.result,
                                "command_id": action.command_id}
        return ev.CommandIssued(
            action.step, command_id(saga_id, action.step, ev.COMPENSATION, self.attempt),
            service, name, ev.COMPENSATION, self.attempt, body)


@dataclass(frozen=True)
class Schedule:
    """Wait before the next attempt of a failed compensation."""

    timer_id: str
    step: int
    due_ms: int

    def event(self) -> ev.TimerScheduled:
        return ev.TimerScheduled(self.timer_id, self.step, "compensation_retry", self.due_ms)


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
    succeeded = sorted((s for s in covered if s.outcome == "ok"),
                       key=lambda s: s.completed_order, reverse=True)
    for action in succeeded:
        done = state.compensations.get(action.step)
        if done is None:
            return Issue(action, 1)
        if done.outcome is None:
            return Wait()
        if done.outcome == "failed":
            attempt = done.attempt + 1
            pause = timer_id(state.saga_id, action.step, "retry", attempt, compensation=True)
            timer = state.timer(pause)
            if timer is None:
                delay = policy.delay_before(attempt)
                return Schedule(pause, action.step,
                                now_ms + int(delay.total_seconds() * 1000))
            if timer.status != "fired":
                return Wait()
            return Issue(action, attempt)
    return Done()
