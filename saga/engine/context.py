"""What a workflow sees: SagaContext and the awaitables its methods return.

A workflow is an ordinary ``async def``, but it runs on no event loop: the executor
drives its coroutine by hand, behind the ``WorkflowRuntime`` protocol this module talks
to. Every ``ctx`` call takes the next step number; a step the
journal already holds is answered from it (replay), a new one is recorded (live). The
awaitables yield themselves while not ready, which is how the executor tells "blocked
on the saga" from "awaited something foreign".
"""

from __future__ import annotations

import random as _random
import uuid as _uuid
from collections.abc import Callable, Generator
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

from saga.engine import events as ev
from saga.engine.compensation import advance_compensation
from saga.engine.ids import child_id, saga_id_too_long, timer_id
from saga.engine.runtime import UpdateHandler, UpdateValidator, WorkflowRuntime
from saga.engine.state import StepOutcome, TimerStatus
from saga.engine.workflow import DEFAULT_RETRY, RetryPolicy
from saga.errors import StepFailed

_Purpose = ev.TimerPurpose


class Divergence(BaseException):
    """The code and the journal disagree. A BaseException so `except Exception` in a
    workflow cannot swallow it."""


class ContinueAsNew(BaseException):
    """Raised by ctx.continue_as_new(): ends this run of the workflow (a control-flow
    signal, so a workflow's `except Exception` cannot swallow it)."""

    def __init__(self, saga_input: Any) -> None:
        super().__init__("continue as new")
        self.input = saga_input


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
    def __init__(self, runtime: WorkflowRuntime, step: int, retry: RetryPolicy,
                 timeout: timedelta | None) -> None:
        self._runtime = runtime
        self.step = step
        self._retry = retry
        self._timeout = timeout

    def poll(self) -> tuple[bool, Any]:
        runtime = self._runtime
        state = runtime.state
        call = state.steps[self.step]
        if call.outcome is None:
            return False, None
        if call.outcome is StepOutcome.OK:
            return True, call.result
        if call.business or call.reason in self._retry.non_retryable:
            raise StepFailed(call.reason, service=call.service, command=call.name)
        if call.attempt >= self._retry.max_attempts:
            raise StepFailed("retries_exhausted", service=call.service, command=call.name,
                             detail=f"{call.attempt} attempts, last: {call.reason}")
        attempt = call.attempt + 1
        delay = self._retry.delay_before(attempt)
        if delay > timedelta(0):
            retry_timer = timer_id(state.saga_id, self.step, _Purpose.RETRY, attempt)
            timer = state.timer(retry_timer)
            if timer is None:
                runtime.schedule(retry_timer, self.step, _Purpose.RETRY, delay)
                return False, None
            if timer.status is not TimerStatus.FIRED:
                return False, None
        runtime.issue_call(self.step, call.service, call.name, call.input, call.compensate,
                             attempt, self._timeout)
        return False, None


class WaitHandle(SagaAwaitable):
    def __init__(self, runtime: WorkflowRuntime, step: int, signal: str,
                 timeout: timedelta | None, until: Callable[[], bool] | None = None) -> None:
        self._runtime = runtime
        self.step = step
        self.signal = signal
        self._timeout = timeout
        self._until = until

    def poll(self) -> tuple[bool, Any]:
        runtime = self._runtime
        state = runtime.state
        resolved = state.resolved_waits.get(self.step)
        if resolved is not None:
            return True, _delivered(state.signals[resolved][1])
        if self.step in state.timed_out_waits:
            return True, None
        deadline = timer_id(state.saga_id, self.step, _Purpose.WAIT)
        consumed = state.consumed_signals()
        for index, (name, payload) in enumerate(state.signals):
            if name == self.signal and index not in consumed:
                runtime.emit(ev.WaitResolved(self.step, index))
                timer = state.timer(deadline)
                if timer is not None and timer.status is TimerStatus.PENDING:
                    runtime.emit(ev.TimerCancelled(deadline))
                return True, _delivered(payload)
        timer = state.timer(deadline)
        if timer is not None and timer.status is TimerStatus.FIRED:
            runtime.emit(ev.WaitTimedOut(self.step))
            return True, None
        if self._until is not None and self.step in state.waits and self._until():
            # the condition came true first: the wait ends like a timeout, its deadline
            # cancelled (recorded, so a replay ends it at the same point)
            if timer is not None and timer.status is TimerStatus.PENDING:
                runtime.emit(ev.TimerCancelled(deadline))
            runtime.emit(ev.WaitTimedOut(self.step))
            return True, None
        if self.step not in state.waits:
            runtime.emit(ev.WaitStarted(self.step, self.signal))
            if self._timeout is not None:
                runtime.schedule(deadline, self.step, _Purpose.WAIT, self._timeout)
        return False, None


def _delivered(payload: Any) -> Any:
    """A signal sent without a payload reads as {}: None always means the wait timed out."""
    return {} if payload is None else payload


class SleepHandle(SagaAwaitable):
    def __init__(self, runtime: WorkflowRuntime, step: int) -> None:
        self._runtime = runtime
        self.step = step

    def poll(self) -> tuple[bool, Any]:
        state = self._runtime.state
        timer = state.timer(timer_id(state.saga_id, self.step, _Purpose.SLEEP))
        return (timer is not None and timer.status is TimerStatus.FIRED), None


class CompensateHandle(SagaAwaitable):
    def __init__(self, runtime: WorkflowRuntime, step: int) -> None:
        self._runtime = runtime
        self.step = step

    def poll(self) -> tuple[bool, Any]:
        runtime = self._runtime
        if runtime.state.compensate_steps.get(self.step):
            return True, None
        done = advance_compensation(runtime, self.step, self.step, runtime.compensation_retry,
                                    runtime.step_timeout)
        return done, None


class ChildHandle(SagaAwaitable):
    """A child saga: await it for its result. A child that ends otherwise than COMPLETED
    raises StepFailed with its status as the reason (compensated, failed, cancelled)."""

    def __init__(self, runtime: WorkflowRuntime, step: int) -> None:
        self._runtime = runtime
        self.step = step

    @property
    def child_id(self) -> str:
        return self._runtime.state.children[self.step].child_id

    @property
    def done(self) -> bool:
        """Whether the child has ended (without waiting for it). Replaying, the answer
        it was when the code first asked: ended before that point of the history."""
        child = self._runtime.state.children[self.step]
        at = self._runtime.replaying_at
        return child.done and (at is None or child.ended_seq < at)

    def poll(self) -> tuple[bool, Any]:
        child = self._runtime.state.children[self.step]
        if not child.done:
            return False, None
        if child.status == "COMPLETED":
            return True, child.result
        reason = child.result.get("reason") if isinstance(child.result, dict) else None
        raise StepFailed(str(child.status).lower(), service="child", command=child.saga_type,
                         detail=child.error or str(reason or child.child_id))


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

    def __init__(self, runtime: WorkflowRuntime) -> None:
        self._runtime = runtime

    @property
    def saga_id(self) -> str:
        return self._runtime.state.saga_id

    @property
    def saga_type(self) -> str:
        return self._runtime.state.saga_type

    def call(self, service: str, command: str, input: Any = None, *,
             compensate: tuple[str, str] | None = None, retry: RetryPolicy | None = None,
             timeout: timedelta | None = None) -> CallHandle:
        """Send ``command`` to ``service``; await the handle for its result.

        ``compensate=(service, command)`` registers the step's undo, run by
        ``compensate()``, a cancel, or a workflow failure. ``retry`` says how technical
        failures are retried (durable timers wait between attempts); ``timeout`` bounds
        each attempt (default: the coordinator's step timeout, ``SAGA_STEP_TIMEOUT_S``):
        no reply in time counts as a technical failure, and a reply that comes later is
        recorded and ignored.
        """
        runtime = self._runtime
        step = runtime.take_step("call", f"{service}.{command}")
        if timeout is None:
            timeout = runtime.step_timeout
        existing = runtime.state.steps.get(step)
        if existing is None:
            # Checked where the workflow calls, so it sees which call is wrong (a replay
            # never gets here: the journal holds the call).
            runtime.check_value(f"the input of ctx.call({service!r}, {command!r})", input)
            runtime.issue_call(step, service, command, input,
                               (compensate[0], compensate[1]) if compensate else None, 1,
                               timeout)
        elif (existing.service, existing.name) != (service, command):
            raise Divergence(f"step {step}: the journal has a call to "
                             f"{existing.service}.{existing.name}, the code now calls "
                             f"{service}.{command}")
        return CallHandle(runtime, step, retry or DEFAULT_RETRY, timeout)

    def wait_signal(self, name: str, *, timeout: timedelta | None = None,
                    until: Callable[[], bool] | None = None) -> WaitHandle:
        """Wait for the signal ``name``: its payload, or None when ``timeout`` passes first
        (or ``until()``, checked whenever the saga gets an input, comes true first: e.g.
        ``until=lambda: child.done``; it must depend on nothing but the saga).

        A signal sent without a payload reads as ``{}``, so None always means the
        timeout (or the condition). A signal that arrived before the wait is delivered at
        once; one that arrives after the timeout is recorded in the history and not acted
        on.
        """
        runtime = self._runtime
        step = runtime.take_step("wait", name)
        recorded = runtime.state.waits.get(step)
        if recorded is not None and recorded != name:
            raise Divergence(f"step {step}: the journal waits for signal {recorded!r}, the "
                             f"code now waits for {name!r}")
        return WaitHandle(runtime, step, name, timeout, until)

    def sleep(self, duration: timedelta) -> SleepHandle:
        """A durable sleep: survives restarts, and a coordinator down at the due time
        wakes the saga as soon as it is back."""
        runtime = self._runtime
        step = runtime.take_step("sleep", "sleep")
        sleep_timer = timer_id(runtime.state.saga_id, step, _Purpose.SLEEP)
        if runtime.state.timer(sleep_timer) is None:
            runtime.schedule(sleep_timer, step, _Purpose.SLEEP, duration)
        return SleepHandle(runtime, step)

    def compensate(self) -> CompensateHandle:
        """Undo every completed step that registered a compensation, newest first."""
        runtime = self._runtime
        step = runtime.take_step("compensate", "compensate")
        if step not in runtime.state.compensate_steps:
            runtime.emit(ev.CompensationStarted(step, "ctx.compensate()"))
        return CompensateHandle(runtime, step)

    def child(self, saga_type: str, input: Any = None, *, id: str | None = None
              ) -> ChildHandle:
        """Start a child saga of ``saga_type`` (its own id, journal and partition); await
        the handle for its result. Its id is ``id``, or ``<this saga's id>.<step>``; a
        child's failure is a StepFailed here; cancelling this saga cancels its children."""
        runtime = self._runtime
        step = runtime.take_step("child", saga_type)
        existing = runtime.state.children.get(step)
        if existing is None:
            runtime.check_value(f"the input of ctx.child({saga_type!r})", input)
            chosen = id or child_id(runtime.state.saga_id, step)
            if not chosen or "\x00" in chosen or chosen == runtime.state.saga_id \
                    or saga_id_too_long(chosen):
                raise StepFailed("invalid_child_id", service="child", command=saga_type,
                                 detail=f"{chosen[:200]!r}" + (
                                     f" ({len(chosen)} characters)" if len(chosen) > 200
                                     else ""))
            runtime.start_child(step, saga_type, input, chosen)
        elif existing.saga_type != saga_type:
            raise Divergence(f"step {step}: the journal started a {existing.saga_type} child, "
                             f"the code now starts a {saga_type}")
        return ChildHandle(runtime, step)

    def patched(self, name: str) -> bool:
        """A change to a workflow that sagas already running must not see: True on the
        new code's path, False where a saga's history went past this point without it.
        ``if ctx.patched("refund-first"): ... else: ...`` (old branch) until no saga of
        the old code runs any more."""
        return self._runtime.patched(name)

    def continue_as_new(self, input: Any = None) -> NoReturn:
        """End this run and begin a fresh one with ``input``, same saga id: the history
        starts again from nothing, so a saga that loops for ever stays small."""
        self._runtime.check_value("the input of ctx.continue_as_new()", input)
        raise ContinueAsNew(input)

    def set_attributes(self, attributes: dict[str, Any]) -> None:
        """Searchable attributes (`saga list --attribute k=v`, the client, the API),
        merged into those set before."""
        if not isinstance(attributes, dict) or not all(isinstance(k, str) for k in attributes):
            raise TypeError("ctx.set_attributes takes a dict with string keys")
        self._runtime.record_attributes(attributes)

    def on_update(self, name: str, handler: UpdateHandler, *,
                  validator: UpdateValidator | None = None) -> None:
        """Answer updates named ``name`` (`client.update(saga_id, name, payload)`):
        ``validator(payload)`` raises to refuse one before anything is journaled;
        ``handler(payload)`` computes the caller's value and may change what the workflow
        holds. Register handlers where the workflow starts: an update is applied between
        two steps, and again at the same point when the saga replays."""
        self._runtime.register_update(name, handler, validator)

    def gather(self, *awaitables: SagaAwaitable) -> GatherHandle:
        """Wait for all of ``awaitables``; their results in order. The first failure raises."""
        for part in awaitables:
            if not isinstance(part, SagaAwaitable):
                raise TypeError(f"ctx.gather takes ctx.* awaitables, not {type(part).__name__}")
        return GatherHandle(tuple(awaitables))

    def now(self) -> datetime:
        ms = self._runtime.record_value("now", lambda: self._runtime.now_ms)
        return datetime.fromtimestamp(ms / 1000, tz=UTC)

    def random(self) -> float:
        value: float = self._runtime.record_value("random", _random.random)
        return value

    def uuid(self) -> str:
        value: str = self._runtime.record_value("uuid", lambda: str(_uuid.uuid4()))
        return value
