"""What a workflow sees: SagaContext and the awaitables its methods return.

A workflow is an ordinary ``async def``, but it runs on no event loop: the executor
drives its coroutine by hand. Every ``ctx`` call takes the next step number; a step the
journal already holds is answered from it (replay), a new one is recorded (live). The
awaitables yield themselves while not ready, which is how the executor tells "blocked
on the saga" from "awaited something foreign".
"""

from __future__ import annotations

import random as _random
import uuid as _uuid
from collections.abc import Generator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from saga.engine import events as ev
from saga.engine.compensation import Done, Issue, Schedule, next_compensation
from saga.engine.ids import timer_id
from saga.engine.workflow import DEFAULT_RETRY, RetryPolicy
from saga.errors import StepFailed

if TYPE_CHECKING:
    from saga.engine.executor import Execution


class Divergence(BaseException):
    """The code and the journal disagree. A BaseException so `except Exception` in a
    workflow cannot swallow it."""


class SagaAwaitable:
    """Base of everything a workflow may await."""

    def poll(self) -> tuple[bool, Any]:
        raise NotImplementedError

    def __await__(self) -> Generator[SagaAwaitable, None, Any]:
        while True:
            ready, value = self.poll()
            if ready:
                return value
            yield self


class CallHandle(SagaAwaitable):
    def __init__(self, execution: Execution, step: int, retry: RetryPolicy,
                 timeout: timedelta | None) -> None:
        self._execution = execution
        self.step = step
        self._retry = retry
        self._timeout = timeout

    def poll(self) -> tuple[bool, Any]:
        execution = self._execution
        state = execution.state
        call = state.steps[self.step]
        if call.outcome is None:
            return False, None
        if call.outcome == "ok":
            return True, call.result
        if call.business or call.reason in self._retry.non_retryable:
            raise StepFailed(call.reason, service=call.service, command=call.name)
        if call.attempt >= self._retry.max_attempts:
            raise StepFailed("retries_exhausted", service=call.service, command=call.name,
                             detail=f"{call.attempt} attempts, last: {call.reason}")
        attempt = call.attempt + 1
        delay = self._retry.delay_before(attempt)
        if delay > timedelta(0):
            retry_timer = timer_id(state.saga_id, self.step, "retry", attempt)
            timer = state.timer(retry_timer)
            if timer is None:
                execution.schedule(retry_timer, self.step, "retry", delay)
                return False, None
            if timer.status != "fired":
                return False, None
        execution.issue_call(self.step, call.service, call.name, call.input, call.compensate,
                             attempt, self._timeout)
        return False, None


class WaitHandle(SagaAwaitable):
    def __init__(self, execution: Execution, step: int, signal: str,
                 timeout: timedelta | None) -> None:
        self._execution = execution
        self.step = step
        self.signal = signal
        self._timeout = timeout

    def poll(self) -> tuple[bool, Any]:
        execution = self._execution
        state = execution.state
        resolved = state.resolved_waits.get(self.step)
        if resolved is not None:
            return True, _delivered(state.signals[resolved][1])
        if self.step in state.timed_out_waits:
            return True, None
        deadline = timer_id(state.saga_id, self.step, "wait")
        consumed = state.consumed_signals()
        for index, (name, payload) in enumerate(state.signals):
            if name == self.signal and index not in consumed:
                execution.emit(ev.WaitResolved(self.step, index))
                timer = state.timer(deadline)
                if timer is not None and timer.status == "pending":
                    execution.emit(ev.TimerCancelled(deadline))
                return True, _delivered(payload)
        timer = state.timer(deadline)
        if timer is not None and timer.status == "fired":
            execution.emit(ev.WaitTimedOut(self.step))
            return True, None
        if self.step not in state.waits:
            execution.emit(ev.WaitStarted(self.step, self.signal))
            if self._timeout is not None:
                execution.schedule(deadline, self.step, "wait", self._timeout)
        return False, None


def _delivered(payload: Any) -> Any:
    """A signal sent without a payload reads as {}: None always means the wait timed out."""
    return {} if payload is None else payload


class SleepHandle(SagaAwaitable):
    def __init__(self, execution: Execution, step: int) -> None:
        self._execution = execution
        self.step = step

    def poll(self) -> tuple[bool, Any]:
        state = self._execution.state
        timer = state.timer(timer_id(state.saga_id, self.step, "sleep"))
        return (timer is not None and timer.status == "fired"), None


class CompensateHandle(SagaAwaitable):
    def __init__(self, execution: Execution, step: int) -> None:
        self._execution = execution
        self.step = step

    def poll(self) -> tuple[bool, Any]:
        execution = self._execution
        if execution.state.compensate_steps.get(self.step):
            return True, None
        move = next_compensation(execution.state, self.step, execution.compensation_retry,
                                 execution.now_ms)
        if isinstance(move, Done):
            execution.emit(ev.CompensationFinished(self.step))
            return True, None
        if isinstance(move, Issue):
            execution.issue_compensation(move)
        elif isinstance(move, Schedule):
            execution.emit(move.event())
        return False, None


class GatherHandle(SagaAwaitable):
    def __init__(self, parts: tuple[SagaAwaitable, ...]) -> None:
        self._parts = parts
        self._done: dict[int, Any] = {}

    def poll(self) -> tuple[bool, Any]:
        for index, part in enumerate(self._parts):
            if index not in self._done:
                ready, value = part.poll()  # a failed part raises StepFailed here
                if ready:
                    self._done[index] = value
        if len(self._done) == len(self._parts):
            return True, [self._done[i] for i in range(len(self._parts))]
        return False, None


class SagaContext:
    """The workflow's only door to the world. Every method is deterministic on replay."""

    def __init__(self, execution: Execution) -> None:
        self._execution = execution

    @property
    def saga_id(self) -> str:
        return self._execution.state.saga_id

    @property
    def saga_type(self) -> str:
        return self._execution.state.saga_type

    def call(self, service: str, command: str, input: Any = None, *,
             compensate: tuple[str, str] | None = None, retry: RetryPolicy | None = None,
             timeout: timedelta | None = None) -> CallHandle:
        """Send ``command`` to ``service``; await the handle for its result.

        ``compensate=(service, command)`` registers the step's undo, run by
        ``compensate()``, a cancel, or a workflow failure. ``retry`` says how technical
        failures are retried (durable timers wait between attempts); ``timeout`` bounds
        each attempt: no reply in time counts as a technical failure, and a reply that
        comes later is recorded and ignored.
        """
        execution = self._execution
        step = execution.take_step("call", f"{service}.{command}")
        existing = execution.state.steps.get(step)
        if existing is None:
            execution.issue_call(step, service, command, input,
                                 (compensate[0], compensate[1]) if compensate else None, 1,
                                 timeout)
        elif (existing.service, existing.name) != (service, command):
            raise Divergence(f"step {step}: the journal has a call to "
                             f"{existing.service}.{existing.name}, the code now calls "
                             f"{service}.{command}")
        return CallHandle(execution, step, retry or DEFAULT_RETRY, timeout)

    def wait_signal(self, name: str, *, timeout: timedelta | None = None) -> WaitHandle:
        """Wait for the signal ``name``: its payload, or None when ``timeout`` passes first.

        A signal sent without a payload reads as ``{}``, so None always means the
        timeout. A signal that arrived before the wait is delivered at once; one that
        arrives after the timeout is recorded in the history and not acted on.
        """
        execution = self._execution
        step = execution.take_step("wait", name)
        recorded = execution.state.waits.get(step)
        if recorded is not None and recorded != name:
            raise Divergence(f"step {step}: the journal waits for signal {recorded!r}, the "
                             f"code now waits for {name!r}")
        return WaitHandle(execution, step, name, timeout)

    def sleep(self, duration: timedelta) -> SleepHandle:
        """A durable sleep: survives restarts, and a coordinator down at the due time
        wakes the saga as soon as it is back."""
        execution = self._execution
        step = execution.take_step("sleep", "sleep")
        sleep_timer = timer_id(execution.state.saga_id, step, "sleep")
        if execution.state.timer(sleep_timer) is None:
            execution.schedule(sleep_timer, step, "sleep", duration)
        return SleepHandle(execution, step)

    def compensate(self) -> CompensateHandle:
        """Undo every completed step that registered a compensation, newest first."""
        execution = self._execution
        step = execution.take_step("compensate", "compensate")
        if step not in execution.state.compensate_steps:
            execution.emit(ev.CompensationStarted(step, "ctx.compensate()"))
        return CompensateHandle(execution, step)

    def gather(self, *awaitables: SagaAwaitable) -> GatherHandle:
        """Wait for all of ``awaitables``; their results in order. The first failure raises."""
        for part in awaitables:
            if not isinstance(part, SagaAwaitable):
                raise TypeError(f"ctx.gather takes ctx.* awaitables, not {type(part).__name__}")
        return GatherHandle(tuple(awaitables))

    def now(self) -> datetime:
        ms = self._execution.record_value("now", lambda: self._execution.now_ms)
        return datetime.fromtimestamp(ms / 1000, tz=UTC)

    def random(self) -> float:
        value: float = self._execution.record_value("random", _random.random)
        return value

    def uuid(self) -> str:
        value: str = self._execution.record_value("uuid", lambda: str(_uuid.uuid4()))
        return value
