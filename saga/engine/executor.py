"""Runs a workflow coroutine against a saga's state, by hand, one activation at a time:
the ``WorkflowRuntime`` the context talks to.

An activation sends the coroutine forward until it blocks on a ctx awaitable that is
not ready, returns, or raises. Everything the workflow decides on the way is emitted
into the decision's Recorder, which applies it to the state at once (so later
awaitables see it) and keeps it for the journal.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from saga.engine import events as ev
from saga.engine.budget import BudgetExceeded, encoded_size, wall_clock
from saga.engine.context import ContinueAsNew, Divergence, SagaAwaitable, SagaContext
from saga.engine.ids import command_id, timer_id
from saga.engine.inputs import UpdateSaga
from saga.engine.recorder import Recorder
from saga.engine.runtime import StepKind, UpdateHandler, UpdateValidator
from saga.engine.state import SagaState
from saga.engine.workflow import RetryPolicy, WorkflowDefinition, due_ms
from saga.errors import UnencodableValue

T = TypeVar("T")
log = logging.getLogger("saga.engine")


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


@dataclass(frozen=True)
class OverBudget:
    detail: str


@dataclass(frozen=True)
class ContinuedAsNew:
    """The workflow asked for a fresh run with ``input`` (ctx.continue_as_new)."""

    input: Any
    next_step: int  # the first step number the old run did not use


@dataclass(frozen=True)
class Crashed:
    """The workflow raised a BaseException that is not an Exception (SystemExit,
    CancelledError, KeyboardInterrupt): a bug, never a business outcome."""

    detail: str


Outcome = (Blocked | Returned | Raised | Diverged | Foreign | OverBudget | Crashed
           | ContinuedAsNew)

FOREIGN_HINT = ("a workflow may only await ctx.* (ctx.call, ctx.wait_signal, ctx.gather, "
                "ctx.compensate); asyncio.sleep and network I/O belong in a service")


class Execution:
    """One live run of a workflow function for one saga."""

    def __init__(self, definition: WorkflowDefinition, saga_input: Any, *,
                 step_timeout: timedelta | None = None, first_step: int = 0) -> None:
        self.definition = definition
        self._step_timeout = step_timeout
        self._journal: Recorder | None = None
        self._next_step = first_step  # a continued run numbers its steps on from the last
        self._finished = False
        self._update_handlers: dict[str, tuple[UpdateHandler, UpdateValidator | None]] = {}
        self._updates_seen: set[str] = set()  # applied (again) in this coroutine
        self.ctx = SagaContext(self)
        self._coroutine = definition.fn(self.ctx, saga_input)

    # ---- WorkflowRuntime -----------------------------------------------------------
    @property
    def state(self) -> SagaState:
        return self._active().state

    @property
    def now_ms(self) -> int:
        return self._active().now_ms

    @property
    def compensation_retry(self) -> RetryPolicy:
        return self.definition.compensation_retry

    @property
    def step_timeout(self) -> timedelta | None:
        return self._step_timeout

    def emit(self, event: ev.Event) -> None:
        self._active().emit(event)

    def check_value(self, what: str, value: Any) -> None:
        limit = self._active().budget.max_value_bytes
        try:
            size = encoded_size(value)
        except TypeError as exc:
            raise UnencodableValue(f"{what} is not JSON: {exc}",
                                   hint="pass dicts, lists, strings, numbers (integers "
                                   "within 64 bits), booleans or None") from None
        if size > limit:
            raise UnencodableValue(f"{what} is {size} bytes, over the limit of {limit}",
                                   hint="pass a reference (an id, a URL) instead of the "
                                   "data")

    @property
    def replaying_at(self) -> int | None:
        return self.state.step_seqs.get(self._next_step)

    def take_step(self, kind: StepKind, label: str) -> int:
        self._replay_updates(self._next_step)
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

    def issue_call(self, step: int, service: str, name: str, input: Any,
                   compensate: tuple[str, str] | None, attempt: int,
                   timeout: timedelta | None) -> None:
        saga_id = self.state.saga_id
        kind = ev.CommandKind.ACTION
        deadline = due_ms(self.now_ms, timeout) if timeout is not None else 0
        self.emit(ev.CommandIssued(step, command_id(saga_id, step, kind, attempt),
                                   service, name, kind, attempt, input, compensate,
                                   deadline_ms=deadline))

    def schedule(self, timer: str, step: int, purpose: ev.TimerPurpose, delay: timedelta
                 ) -> None:
        self.emit(ev.TimerScheduled(timer, step, purpose, due_ms(self.now_ms, delay)))

    def start_child(self, step: int, saga_type: str, input: Any, child_id: str) -> None:
        self.emit(ev.ChildStarted(step, child_id, saga_type, input))

    def patched(self, name: str) -> bool:
        state = self.state
        if name in state.patches:
            return True
        if _highest_recorded_step(state) >= self._next_step:
            return False  # the history went on past this point without the patch
        self.emit(ev.PatchMarked(name))
        return True

    def record_attributes(self, attributes: dict[str, Any]) -> None:
        step = self.take_step("attributes", "set_attributes")
        if step not in self.state.attribute_steps:
            self.check_value("the attributes of ctx.set_attributes()", attributes)
            self.emit(ev.AttributesSet(step, attributes))

    def register_update(self, name: str, handler: UpdateHandler,
                        validator: UpdateValidator | None) -> None:
        self._update_handlers[name] = (handler, validator)

    # ---- updates -------------------------------------------------------------------
    def _replay_updates(self, at_step: int) -> None:
        """Run again the handlers of updates applied when the workflow stood at
        ``at_step``: what they changed in the workflow comes back on replay."""
        for update_id, applied in self.state.updates.items():
            if applied.get("step") != at_step or update_id in self._updates_seen:
                continue
            self._updates_seen.add(update_id)
            found = self._update_handlers.get(applied["name"])
            if found is None:
                raise Divergence(f"update {applied['name']!r} was applied at step {at_step} "
                                 "but the code registers no handler for it")
            found[0](applied["payload"])

    def apply_update(self, update: UpdateSaga) -> None:
        """A new update, at the point where the workflow now stands: validated, then its
        handler run once and its result journaled (or its refusal)."""
        found = self._update_handlers.get(update.name)
        if found is None:
            known = ", ".join(sorted(self._update_handlers)) or "none"
            self.emit(ev.UpdateRejected(update.update_id, update.name,
                                        f"no update handler named {update.name!r} "
                                        f"(registered: {known})"))
            return
        handler, validator = found
        try:
            if validator is not None:
                validator(update.payload)
            result = handler(update.payload)
            self.check_value(f"the result of update {update.name!r}", result)
        except Exception as exc:  # noqa: BLE001 - the caller hears why, the saga goes on
            self.emit(ev.UpdateRejected(update.update_id, update.name,
                                        f"{type(exc).__name__}: {exc}"))
            return
        self._updates_seen.add(update.update_id)
        self.emit(ev.UpdateApplied(update.update_id, update.name, update.payload,
                                   self._next_step, result))

    # ---- used by the decider -------------------------------------------------------
    def activate(self, journal: Recorder, update: UpdateSaga | None = None) -> Outcome:
        """Drive the coroutine as far as the saga's state allows, emitting into
        ``journal``; then apply ``update`` where it stands and drive it on."""
        if self._finished:
            raise RuntimeError("activate() after the workflow finished")
        self._journal = journal
        try:
            with wall_clock(journal.budget.max_seconds):
                outcome = self._drive()
                if isinstance(outcome, Blocked):
                    self._replay_updates(self._next_step)
                    if update is not None:
                        self.apply_update(update)
                        outcome = self._drive()
            if not isinstance(outcome, Blocked):
                self._finished = True
            if isinstance(outcome, Blocked | Returned):
                dangling = _highest_recorded_step(journal.state)
                if dangling >= self._next_step:
                    self.close()
                    return Diverged(f"the code stopped at step {self._next_step} but the "
                                    f"journal holds step {dangling} "
                                    f"({_recorded_kind(journal.state, dangling)})")
            return outcome
        finally:
            self._journal = None

    def close(self) -> None:
        """Close the coroutine; never raises. A workflow whose ``finally`` awaits ctx or
        raises makes close() raise: that is its bug, and nothing it tries then reaches
        the journal (the run is detached first)."""
        self._finished = True
        self._journal = None
        try:
            with wall_clock(1.0):
                self._coroutine.close()
        except BaseException as exc:  # noqa: BLE001 - a workflow bug must not escape
            log.warning("closing workflow %s raised %s: %s", self.definition.name,
                        type(exc).__name__, exc)

    def _active(self) -> Recorder:
        if self._journal is None:
            raise RuntimeError("a ctx method was used outside the workflow's own run")
        return self._journal

    def _drive(self) -> Outcome:
        try:
            yielded = self._coroutine.send(None)
        except StopIteration as stop:
            return Returned(stop.value)
        except Divergence as divergence:
            return Diverged(str(divergence))
        except ContinueAsNew as again:
            self.close()
            return ContinuedAsNew(again.input, self._next_step)
        except BudgetExceeded as exceeded:
            self.close()
            return OverBudget(str(exceeded))
        except RuntimeError as error:
            if "event loop" in str(error):
                return Foreign(f"{error}: {FOREIGN_HINT}")
            return Raised(error)
        except Exception as error:  # noqa: BLE001 - any workflow exception fails the saga
            return Raised(error)
        except BaseException as error:  # noqa: BLE001 - SystemExit and kin: a bug
            self.close()
            return Crashed(f"the workflow raised {type(error).__name__}: {error}")
        if isinstance(yielded, SagaAwaitable):
            return Blocked()
        self.close()
        return Foreign(f"the workflow awaited {type(yielded).__name__}: {FOREIGN_HINT}")


def _sleep_steps(state: SagaState) -> list[int]:
    return [t.step for t in state.timers.values() if t.purpose is ev.TimerPurpose.SLEEP]


def _recorded_kind(state: SagaState, step: int) -> StepKind | None:
    if step in state.steps:
        return "call"
    if step in state.values:
        return "value"
    if step in state.waits or step in state.resolved_waits or step in state.timed_out_waits:
        return "wait"
    if state.timer(timer_id(state.saga_id, step, ev.TimerPurpose.SLEEP)) is not None:
        return "sleep"  # by its id: scanning every timer per step made replay quadratic
    if step in state.compensate_steps:
        return "compensate"
    if step in state.children:
        return "child"
    if step in state.attribute_steps:
        return "attributes"
    return None


def _highest_recorded_step(state: SagaState) -> int:
    return max([-1, *state.steps, *state.values, *state.waits, *state.resolved_waits,
                *state.timed_out_waits, *state.compensate_steps, *_sleep_steps(state),
                *state.children, *state.attribute_steps])
