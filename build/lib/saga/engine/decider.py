"""The decider: one input for one saga in, the journal entries it causes out.

Pure Python with no I/O: the coordinator feeds it decoded inbox messages and the
saga's current state, and writes what comes back to Kafka in one transaction. Inputs
that cannot belong to any saga come back as a Rejection for the dead-letter topic.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

import orjson

from saga.engine import events as ev
from saga.engine.compensation import Done, Issue, Schedule, next_compensation
from saga.engine.executor import (
    Blocked,
    Diverged,
    Execution,
    Foreign,
    Outcome,
    Raised,
    Returned,
)
from saga.engine.ids import parse_command_id, timer_id
from saga.engine.inputs import (
    CancelSaga,
    CommandReply,
    DeliverSignal,
    FireTimer,
    Input,
    StartSaga,
)
from saga.engine.lifecycle import SagaStatus
from saga.engine.state import Compensation, SagaState, Step, apply
from saga.engine.workflow import COMPENSATION_RETRY, WorkflowDefinition, WorkflowRegistry


@dataclass(frozen=True)
class Rejection:
    reason: str  # machine-readable, e.g. unknown_saga_type
    detail: str  # for a person


@dataclass
class Decision:
    state: SagaState | None
    entries: list[ev.Entry] = field(default_factory=list)
    rejection: Rejection | None = None


class Engine:
    """Decides for every saga of the partitions it is given; keeps live coroutines."""

    def __init__(self, registry: WorkflowRegistry, *, cache_size: int = 10_000) -> None:
        self.registry = registry
        self._cache: OrderedDict[str, tuple[int, Execution]] = OrderedDict()
        self._cache_size = cache_size
        self.replays = 0  # activations that had to rebuild a coroutine (for metrics)

    def forget(self, saga_ids: Iterable[str] | None = None) -> None:
        """Drop live coroutines, e.g. after an aborted transaction or a revoked partition."""
        if saga_ids is None:
            for _, execution in self._cache.values():
                execution.close()
            self._cache.clear()
            return
        for saga_id in saga_ids:
            cached = self._cache.pop(saga_id, None)
            if cached is not None:
                cached[1].close()

    def decide(self, saga_id: str, state: SagaState | None, message: Input, now_ms: int
               ) -> Decision:
        run = _Run(saga_id, state, now_ms)
        if isinstance(message, StartSaga):
            if state is not None and state.exists:
                return Decision(state)  # a repeated start: the saga already runs
            definition = self.registry.latest(message.saga_type)
            if definition is None:
                known = ", ".join(self.registry.names()) or "none"
                return Decision(state, rejection=Rejection(
                    "unknown_saga_type",
                    f"no workflow named {message.saga_type!r} is registered (known: {known})"))
            run.emit(ev.SagaStarted(message.saga_type, definition.version, message.input))
        elif state is None or not state.exists:
            kind = type(message).__name__
            return Decision(state, rejection=Rejection(
                "unknown_saga", f"{kind} for saga {saga_id!r}, which was never started"))
        else:
            rejection = self._record_input(run, message)
            if rejection is not None:
                return Decision(state, rejection=rejection)
        self._progress(run)
        return Decision(run.state, run.entries)

    # ---- inputs --------------------------------------------------------------------
    def _record_input(self, run: _Run, message: Input) -> Rejection | None:
        state = run.state
        if isinstance(message, CommandReply):
            return self._record_reply(run, message)
        if isinstance(message, FireTimer):
            self._record_timer(run, message)
            return None
        if isinstance(message, DeliverSignal):
            if state.terminal:
                run.emit(ev.InputIgnored("signal_after_end",
                                         f"signal {message.name!r} after the saga ended"))
            else:
                run.emit(ev.SignalReceived(message.name, message.payload))
        elif isinstance(message, CancelSaga):
            if state.terminal or state.cancel_reason:
                run.emit(ev.InputIgnored("cancel_ignored", "the saga has ended or is already "
                                         "cancelling"))
            else:
                self.forget([state.saga_id])
                run.emit(ev.CancelRequested(message.reason or "cancelled"))
        return None

    def _record_reply(self, run: _Run, reply: CommandReply) -> Rejection | None:
        state = run.state
        ref = parse_command_id(reply.command_id)
        if ref is None or ref.saga_id != state.saga_id:
            return Rejection("reply_for_unknown_command",
                             f"reply with command id {reply.command_id!r}, not one of this "
                             "saga's")
        issued: Step | Compensation | None = (
            state.steps.get(ref.step) if ref.kind == ev.ACTION
            else state.compensations.get(ref.step))
        if issued is None or ref.attempt > issued.attempt:
            return Rejection("reply_for_unknown_command",
                             f"reply for {reply.command_id}, which this saga never issued")
        timed_out = isinstance(issued, Step) and issued.reason == "timeout"
        if ref.attempt < issued.attempt:
            run.emit(ev.InputIgnored("late_reply", f"reply for attempt {ref.attempt} of "
                                     f"{issued.service}.{issued.name}; attempt "
                                     f"{issued.attempt} is current"))
        elif issued.outcome is not None:
            run.emit(ev.InputIgnored("late_reply" if timed_out else "duplicate_reply",
                                     f"reply for {reply.command_id} after "
                                     f"{'its timeout' if timed_out else 'the first one'}"))
        else:
            if reply.outcome == "OK":
                run.emit(ev.CommandCompleted(reply.command_id, ref.step, ref.kind,
                                             reply.result))
            else:
                run.emit(ev.CommandFailed(reply.command_id, ref.step, ref.kind,
                                          reply.error or reply.outcome.lower(),
                                          business=reply.outcome == "BUSINESS_ERROR"))
            deadline = state.timer(timer_id(state.saga_id, ref.step, "timeout", ref.attempt))
            if ref.kind == ev.ACTION and deadline is not None and deadline.status == "pending":
                run.emit(ev.TimerCancelled(deadline.timer_id))
        return None

    def _record_timer(self, run: _Run, fire: FireTimer) -> None:
        state = run.state
        timer = state.timer(fire.timer_id)
        if timer is None or timer.status != "pending":
            status = timer.status if timer else "unknown"
            run.emit(ev.InputIgnored("stale_timer", f"timer {fire.timer_id} is {status}"))
            return
        run.emit(ev.TimerFired(fire.timer_id))
        if timer.purpose == "timeout":
            call = state.steps[timer.step]
            attempt = int(fire.timer_id.rsplit(":", 1)[1])
            if call.attempt == attempt and call.outcome is None:
                run.emit(ev.CommandTimedOut(call.command_id, call.step))

    # ---- progress ------------------------------------------------------------------
    def _progress(self, run: _Run) -> None:
        state = run.state
        if state.terminal or state.status is SagaStatus.PARKED:
            return
        if not state.workflow_done:
            self._activate(run)
        state = run.state
        if state.workflow_done and not state.terminal and state.status is not SagaStatus.PARKED:
            self._compensate_all(run)

    def _activate(self, run: _Run) -> None:
        state = run.state
        definition = self.registry.get(state.saga_type, state.version)
        if definition is None:
            run.emit(ev.SagaParked("unknown_workflow",
                                   f"workflow {state.saga_type!r} version {state.version} is "
                                   "not registered in this coordinator"))
            return
        execution = self._execution_for(state, run.seq_before, definition)
        outcome: Outcome = execution.activate(state, run.now_ms)
        run.adopt(execution)
        if isinstance(outcome, Blocked):
            self._remember(state.saga_id, execution)
            return
        self.forget([state.saga_id])
        match outcome:
            case Returned(value=value):
                try:
                    result = orjson.loads(orjson.dumps(value))
                except TypeError as exc:
                    run.emit(ev.WorkflowFailed(f"the workflow's result is not JSON: {exc}"))
                    return
                run.finish(ev.SagaCompleted(result, compensated=run.state.compensated))
            case Raised(error=error):
                run.emit(ev.WorkflowFailed(f"{type(error).__name__}: {error}"))
            case Diverged(detail=detail):
                run.emit(ev.SagaParked("non_determinism", detail))
            case Foreign(detail=detail):
                run.emit(ev.SagaParked("foreign_awaitable", detail))

    def _execution_for(self, state: SagaState, seq_before: int,
                       definition: WorkflowDefinition) -> Execution:
        cached = self._cache.pop(state.saga_id, None)
        if cached is not None:
            seq, execution = cached
            if seq == seq_before:
                return execution
            execution.close()
        if seq_before > 0:  # not a fresh start: the coroutine must catch up on its history
            self.replays += 1
        return Execution(definition, state)

    def _remember(self, saga_id: str, execution: Execution) -> None:
        self._cache[saga_id] = (execution.state.seq, execution)
        while len(self._cache) > self._cache_size:
            _, (_, evicted) = self._cache.popitem(last=False)
            evicted.close()

    def _compensate_all(self, run: _Run) -> None:
        state = run.state
        if -1 not in state.compensate_steps:
            run.emit(ev.CompensationStarted(-1, "cancelled" if state.cancel_reason
                                            else "workflow failed"))
        definition = self.registry.get(state.saga_type, state.version)
        policy = definition.compensation_retry if definition else COMPENSATION_RETRY
        move = next_compensation(run.state, None, policy, run.now_ms)
        if isinstance(move, Issue):
            run.emit(move.command(state.saga_id))
        elif isinstance(move, Schedule):
            run.emit(move.event())
        elif isinstance(move, Done):
            run.emit(ev.CompensationFinished(-1))
            if run.state.cancel_reason:
                run.finish(ev.SagaCancelled(run.state.cancel_reason))
            else:
                run.finish(ev.SagaFailed(run.state.workflow_error))


class _Run:
    """The entries of one decision, applied to the state as they are made."""

    def __init__(self, saga_id: str, state: SagaState | None, now_ms: int) -> None:
        self.state = state if state is not None else SagaState(saga_id)
        self.seq_before = self.state.seq
        self.now_ms = now_ms
        self.entries: list[ev.Entry] = []

    def emit(self, event: ev.Event) -> None:
        entry = ev.Entry(self.state.saga_id, self.state.seq, self.now_ms, event)
        self.state = apply(self.state, entry)
        self.entries.append(entry)

    def finish(self, terminal: ev.Event) -> None:
        """End the saga: no timer outlives it (each gets its tombstone on saga.timers)."""
        for timer in self.state.pending_timers():
            self.emit(ev.TimerCancelled(timer.timer_id))
        self.emit(terminal)

    def adopt(self, execution: Execution) -> None:
        self.entries.extend(execution.new_entries)
        self.state = execution.state
