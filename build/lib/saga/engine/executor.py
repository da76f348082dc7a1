"""Runs a workflow coroutine against a saga's state, by hand, one activation at a time.

An activation sends the coroutine forward until it blocks on a ctx awaitable that is
not ready, returns, or raises. Everything the workflow decides on the way is an event,
applied to the state at once (so later awaitables see it) and handed back to the
decider for the journal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from saga.engine import events as ev
from saga.engine.compensation import Issue
from saga.engine.context import Divergence, SagaAwaitable, SagaContext
from saga.engine.ids import command_id, timer_id
from saga.engine.state import SagaState, apply
from saga.engine.workflow import WorkflowDefinition

T = TypeVar("T")


@dataclass(frozen=True)
class Blocked:
    pass


@dataclass(frozen=True)
class Returned:
    value: Any


@dataclass(frozen=True)
class Raised:
    error: BaseException


@dataclass(frozen=True)
class Diverged:
    detail: str


@dataclass(frozen=True)
class Foreign:
    detail: str


Outcome = Blocked | Returned | Raised | Diverged | Foreign

FOREIGN_HINT = ("a workflow may only await ctx.* (ctx.call, ctx.wait_signal, ctx.gather, "
                "ctx.compensate); asyncio.sleep and network I/O belong in a service")


class Execution:
    """One live run of a workflow function for one saga."""

    def __init__(self, definition: WorkflowDefinition, state: SagaState) -> None:
        self.definition = definition
        self.compensation_retry = definition.compensation_retry
        self.state = state
        self.now_ms = 0
        self.new_entries: list[ev.Entry] = []
        self._next_step = 0
        self._finished = False
        self.ctx = SagaContext(self)
        self._coroutine = definition.fn(self.ctx, state.input)

    # ---- used by the context -------------------------------------------------------
    def emit(self, event: ev.Event) -> None:
        entry = ev.Entry(self.state.saga_id, self.state.seq, self.now_ms, event)
        self.state = apply(self.state, entry)
        self.new_entries.append(entry)

    def take_step(self, kind: str, label: str) -> int:
        step = self._next_step
        self._next_step += 1
        recorded = _recorded_kind(self.state, step)
        if recorded is not None and recorded != kind:
            raise Divergence(f"step {step}: the journal has a {recorded}, the code now makes "
                             f"a {kind} ({label})")
        return step

    def record_value(self, what: str, produce: Callable[[], T]) -> T:
        step = self.take_step("value", what)
        if step in self.state.values:
            recorded: T = self.state.values[step]
            return recorded
        value = produce()
        self.emit(ev.ValueRecorded(step, what, value))
        return value

    def issue_compensation(self, move: Issue) -> None:
        self.emit(move.command(self.state.saga_id))

    def issue_call(self, step: int, service: str, name: str, input: Any,
                   compensate: tuple[str, str] | None, attempt: int,
                   timeout: timedelta | None) -> None:
        saga_id = self.state.saga_id
        self.emit(ev.CommandIssued(step, command_id(saga_id, step, ev.ACTION, attempt),
                                   service, name, ev.ACTION, attempt, input, compensate))
        if timeout is not None:
            self.schedule(timer_id(saga_id, step, "timeout", attempt), step, "timeout",
                          timeout)

    def schedule(self, timer: str, step: int, purpose: str, delay: timedelta) -> None:
        due_ms = self.now_ms + max(0, int(delay.total_seconds() * 1000))
        self.emit(ev.TimerScheduled(timer, step, purpose, due_ms))

    # ---- used by the decider -------------------------------------------------------
    def activate(self, state: SagaState, now_ms: int) -> Outcome:
        """Drive the coroutine as far as ``state`` allows."""
        self.state = state
        self.now_ms = now_ms
        self.new_entries = []
        if self._finished:
            raise RuntimeError("activate() after the workflow finished")
        outcome = self._drive()
        if not isinstance(outcome, Blocked):
            self._finished = True
        if isinstance(outcome, Blocked | Returned):
            dangling = _highest_recorded_step(self.state)
            if dangling >= self._next_step:
                self.close()
                return Diverged(f"the code stopped at step {self._next_step} but the journal "
                                f"holds step {dangling} "
                                f"({_recorded_kind(self.state, dangling)})")
        return outcome

    def close(self) -> None:
        self._finished = True
        self._coroutine.close()

    def _drive(self) -> Outcome:
        try:
            yielded = self._coroutine.send(None)
        except StopIteration as stop:
            return Returned(stop.value)
        except Divergence as divergence:
            return Diverged(str(divergence))
        except RuntimeError as error:
            if "event loop" in str(error):
                return Foreign(f"{error}: {FOREIGN_HINT}")
            return Raised(error)
        except Exception as error:  # noqa: BLE001 - any workflow exception fails the saga
            return Raised(error)
        if isinstance(yielded, SagaAwaitable):
            return Blocked()
        self.close()
        return Foreign(f"the workflow awaited {type(yielded).__name__}: {FOREIGN_HINT}")


def _recorded_kind(state: SagaState, step: int) -> str | None:
    if step in state.steps:
        return "call"
    if step in state.values:
        return "value"
    if step in state.waits or step in state.resolved_waits or step in state.timed_out_waits:
        return "wait"
    if any(t.step == step and t.purpose == "sleep" for t in state.timers.values()):
        return "sleep"
    if step in state.compensate_steps:
        return "compensate"
    return None


def _highest_recorded_step(state: SagaState) -> int:
    sleeps = [t.step for t in state.timers.values() if t.purpose == "sleep"]
    return max([-1, *state.steps, *state.values, *state.waits, *state.resolved_waits,
                *state.timed_out_waits, *state.compensate_steps, *sleeps])
