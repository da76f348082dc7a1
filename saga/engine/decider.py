"""The decider: one input for one saga in, the journal entries it causes out.

Pure Python with no I/O: the coordinator feeds it decoded inbox messages and the
saga's current state, and writes what comes back to Kafka in one transaction. Inputs
that cannot belong to any saga come back as a Rejection for the dead-letter topic.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum

import orjson

from saga.engine import events as ev
from saga.engine.budget import BudgetExceeded, RunBudget, encoded_size
from saga.engine.compensation import advance_compensation
from saga.engine.executor import (
    Blocked,
    ContinuedAsNew,
    Crashed,
    Diverged,
    Execution,
    Foreign,
    Outcome,
    OverBudget,
    Raised,
    Returned,
)
from saga.engine.ids import parse_command_id, parse_timer_id, timer_id
from saga.engine.inputs import (
    AbandonSaga,
    CancelSaga,
    ChildFinished,
    CommandReply,
    DeliverSignal,
    FireTimer,
    Input,
    ReplyOutcome,
    ResumeSaga,
    StartSaga,
    UpdateSaga,
)
from saga.engine.lifecycle import SagaStatus
from saga.engine.recorder import Recorder
from saga.engine.state import TIMED_OUT, Compensation, SagaState, Step, TimerStatus
from saga.engine.workflow import COMPENSATION_RETRY, WorkflowDefinition, WorkflowRegistry


class RejectReason(StrEnum):
    """Why an input cannot belong to any saga (it goes to the dead-letter topic)."""

    UNKNOWN_SAGA_TYPE = "unknown_saga_type"
    UNKNOWN_SAGA = "unknown_saga"  # an input for a saga id never started
    REPLY_FOR_UNKNOWN_COMMAND = "reply_for_unknown_command"
    TOO_MANY_SIGNALS = "too_many_signals"  # the saga holds its limit of unread signals
    #: a reply naming another service than the one the step called
    REPLY_FROM_OTHER_SERVICE = "reply_from_other_service"


@dataclass(frozen=True)
class Rejection:
    reason: RejectReason
    detail: str  # for a person


@dataclass
class Decision:
    state: SagaState | None
    entries: list[ev.Entry] = field(default_factory=list)
    rejection: Rejection | None = None


class Decider:
    """Decides for every saga of the partitions it is given; keeps live coroutines."""

    def __init__(self, registry: WorkflowRegistry, *, cache_size: int = 10_000,
                 budget: RunBudget | None = None, step_timeout: timedelta | None = None,
                 cached_entries: int = 5_000_000) -> None:
        """``step_timeout``: the reply deadline of every call and compensation attempt
        that names none (None: no deadline). The live coroutines kept are bounded by
        count (``cache_size``) and by the journal entries of their sagas
        (``cached_entries``), the measure of what their frames hold on to."""
        self.registry = registry
        self.budget = budget or RunBudget()
        self.step_timeout = step_timeout
        self._cached_entries_limit = cached_entries
        self._cached_entries = 0
        self._cache: OrderedDict[str, tuple[int, Execution]] = OrderedDict()
        self._cache_size = cache_size
        self.replays = 0  # activations that had to rebuild a coroutine (for metrics)

    def forget(self, saga_ids: Iterable[str] | None = None) -> None:
        """Drop live coroutines, e.g. after an aborted transaction or a revoked partition."""
        if saga_ids is None:
            for _, execution in self._cache.values():
                execution.close()
            self._cache.clear()
            self._cached_entries = 0
            return
        for saga_id in saga_ids:
            cached = self._cache.pop(saga_id, None)
            if cached is not None:
                self._cached_entries -= cached[0]
                cached[1].close()

    def decide(self, saga_id: str, state: SagaState | None, message: Input, now_ms: int
               ) -> Decision:
        run = Recorder(state if state is not None else SagaState(saga_id), now_ms,
                       self.budget)
        if isinstance(message, StartSaga):
            if state is not None and state.exists:
                # A repeated start changes nothing, but is recorded: whoever sent it can
                # tell from the journal that the saga was already there.
                run.emit(ev.InputIgnored("duplicate_start",
                                         f"start of {message.saga_type!r}: the saga exists"))
                return Decision(run.state, run.entries)
            definition = self.registry.latest(message.saga_type)
            if definition is None:
                known = ", ".join(self.registry.names()) or "none"
                return Decision(state, rejection=Rejection(
                    RejectReason.UNKNOWN_SAGA_TYPE,
                    f"no workflow named {message.saga_type!r} is registered (known: {known})"))
            run.emit(ev.SagaStarted(message.saga_type, definition.version, message.input,
                                    message.trace, message.parent, message.parent_step))
        elif state is None or not state.exists:
            kind = type(message).__name__
            return Decision(state, rejection=Rejection(
                RejectReason.UNKNOWN_SAGA, f"{kind} for saga {saga_id!r}, which was never started"))
        else:
            rejection = self._record_input(run, message)
            if rejection is not None:
                return Decision(state, rejection=rejection)
        recorded = run.mark()
        update = message if isinstance(message, UpdateSaga) else None
        try:
            self._progress(run, update)
        except BudgetExceeded as exceeded:
            # Past the budget outside the workflow's own run (finishing, compensating):
            # keep the input, drop what followed it, park.
            self.forget([saga_id])
            run.rollback(recorded)
            run.emit(ev.SagaParked(ev.ParkReason.BUDGET_EXCEEDED, str(exceeded)),
                     force=True)
        return Decision(run.state, run.entries)

    def park(self, saga_id: str, state: SagaState, reason: ev.ParkReason, detail: str,
             now_ms: int) -> Decision:
        """Park ``state`` (a saga's committed state) outside any workflow run: what a
        decision wrote could not be used, so the saga stops where it was."""
        self.forget([saga_id])
        run = Recorder(state, now_ms, self.budget)
        if state.exists and not state.terminal and state.status is not SagaStatus.PARKED:
            run.emit(ev.SagaParked(reason, detail), force=True)
        return Decision(run.state, run.entries)

    # ---- inputs --------------------------------------------------------------------
    def _record_input(self, run: Recorder, message: Input) -> Rejection | None:
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
            elif (unread := len(state.signals) - len(state.resolved_waits)) \
                    >= self.budget.max_pending_signals:
                return Rejection(RejectReason.TOO_MANY_SIGNALS,
                                 f"signal {message.name!r}: the saga holds {unread} signals "
                                 "no wait has taken, its limit (SAGA_MAX_PENDING_SIGNALS)")
            else:
                run.emit(ev.SignalReceived(message.name, message.payload))
        elif isinstance(message, ResumeSaga):
            if state.status is not SagaStatus.PARKED:
                run.emit(ev.InputIgnored("resume_ignored", f"the saga is {state.status}, "
                                         "not PARKED"))
            else:
                self.forget([state.saga_id])  # replay from scratch with the code now here
                run.emit(ev.SagaResumed(message.reason))
        elif isinstance(message, AbandonSaga):
            if state.terminal or state.abandon_reason:
                run.emit(ev.InputIgnored("abandon_ignored", "the saga has ended or is "
                                         "already abandoned"))
            else:
                self.forget([state.saga_id])
                run.emit(ev.AbandonRequested(message.reason, message.compensate))
                _cancel_children(run)
                if not message.compensate:
                    run.finish(ev.SagaFailed(f"abandoned: {message.reason}"))
        elif isinstance(message, CancelSaga):
            if state.terminal or state.cancel_reason:
                run.emit(ev.InputIgnored("cancel_ignored", "the saga has ended or is already "
                                         "cancelling"))
            else:
                self.forget([state.saga_id])
                run.emit(ev.CancelRequested(message.reason or "cancelled"))
                _cancel_children(run)
        elif isinstance(message, ChildFinished):
            child = state.child(message.child_id)
            if child is None or child.done:
                run.emit(ev.InputIgnored("child_end_ignored", f"child {message.child_id} is "
                                         f"{'done already' if child else 'not one of this run'}"))
            else:
                run.emit(ev.ChildEnded(child.step, child.child_id, message.status,
                                       message.result, message.error))
        elif isinstance(message, UpdateSaga):
            held = state.updates.get(message.update_id)
            if held is not None:
                run.emit(ev.InputIgnored("duplicate_update", f"update {message.update_id} "
                                         "was answered before"))
            elif state.terminal or state.workflow_done or state.status is SagaStatus.PARKED:
                run.emit(ev.UpdateRejected(message.update_id, message.name,
                                           f"the saga is {state.status}: it takes no update"))
        return None

    def _record_reply(self, run: Recorder, reply: CommandReply) -> Rejection | None:
        state = run.state
        ref = parse_command_id(reply.command_id)
        if ref is None or ref.saga_id != state.saga_id:
            return Rejection(RejectReason.REPLY_FOR_UNKNOWN_COMMAND,
                             f"reply with command id {reply.command_id!r}, not one of this "
                             "saga's")
        issued: Step | Compensation | None = (
            state.steps.get(ref.step) if ref.kind == ev.CommandKind.ACTION
            else state.compensations.get(ref.step))
        if issued is None or ref.attempt > issued.attempt:
            return Rejection(RejectReason.REPLY_FOR_UNKNOWN_COMMAND,
                             f"reply for {reply.command_id}, which this saga never issued")
        if reply.service != issued.service:
            # With origin keys the service a reply names is the one that tagged it: only
            # the service a step called may answer it.
            return Rejection(RejectReason.REPLY_FROM_OTHER_SERVICE,
                             f"reply for {reply.command_id} from {reply.service!r}; the step "
                             f"called {issued.service!r}")
        timed_out = (issued.reason if isinstance(issued, Step) else issued.error) == TIMED_OUT
        if ref.attempt < issued.attempt:
            run.emit(ev.InputIgnored("late_reply", f"reply for attempt {ref.attempt} of "
                                     f"{issued.service}.{issued.name}; attempt "
                                     f"{issued.attempt} is current"))
        elif issued.outcome is not None:
            run.emit(ev.InputIgnored("late_reply" if timed_out else "duplicate_reply",
                                     f"reply for {reply.command_id} after "
                                     f"{'its timeout' if timed_out else 'the first one'}"))
        else:
            if reply.outcome == ReplyOutcome.OK:
                run.emit(ev.CommandCompleted(reply.command_id, ref.step, ref.kind,
                                             reply.result))
            else:
                run.emit(ev.CommandFailed(reply.command_id, ref.step, ref.kind,
                                          reply.error or reply.outcome.lower(),
                                          business=reply.outcome == ReplyOutcome.BUSINESS_ERROR))
            deadline = state.timer(timer_id(
                state.saga_id, ref.step, ev.TimerPurpose.TIMEOUT, ref.attempt,
                compensation=ref.kind is ev.CommandKind.COMPENSATION))
            if deadline is not None and deadline.status == TimerStatus.PENDING:
                run.emit(ev.TimerCancelled(deadline.timer_id))
        return None

    def _record_timer(self, run: Recorder, fire: FireTimer) -> None:
        state = run.state
        timer = state.timer(fire.timer_id)
        if timer is None and fire.timer_id in state.deadlines():
            # A reply deadline held in the state (CommandIssued.deadline_ms): still the
            # current attempt's and still unanswered, or it would not be listed.
            ref = parse_timer_id(fire.timer_id)
            assert ref is not None
            waiting: Step | Compensation = (state.compensations[ref.step] if ref.compensation
                                            else state.steps[ref.step])
            kind = ev.CommandKind.COMPENSATION if ref.compensation else ev.CommandKind.ACTION
            run.emit(ev.CommandTimedOut(waiting.command_id, waiting.step, kind))
            return
        if timer is None or timer.status != TimerStatus.PENDING:
            status = timer.status if timer else "unknown"
            run.emit(ev.InputIgnored("stale_timer", f"timer {fire.timer_id} is {status}"))
            return
        run.emit(ev.TimerFired(fire.timer_id))
        ref = parse_timer_id(fire.timer_id)
        if timer.purpose != ev.TimerPurpose.TIMEOUT or ref is None:
            return
        issued: Step | Compensation | None = (
            state.compensations.get(timer.step) if ref.compensation
            else state.steps.get(timer.step))
        if issued is not None and issued.attempt == ref.attempt and issued.outcome is None:
            kind = ev.CommandKind.COMPENSATION if ref.compensation else ev.CommandKind.ACTION
            run.emit(ev.CommandTimedOut(issued.command_id, issued.step, kind))

    # ---- progress ------------------------------------------------------------------
    def _progress(self, run: Recorder, update: UpdateSaga | None = None) -> None:
        state = run.state
        if state.terminal or state.status is SagaStatus.PARKED:
            return
        if update is not None and update.update_id in state.updates:
            update = None  # refused or answered while recording the input
        if not state.workflow_done:
            self._activate(run, update)
        state = run.state
        if state.workflow_done and not state.terminal and state.status is not SagaStatus.PARKED:
            self._compensate_all(run)

    def _activate(self, run: Recorder, update: UpdateSaga | None = None) -> None:
        state = run.state
        definition = self.registry.get(state.saga_type, state.version)
        if definition is None:
            run.emit(ev.SagaParked(ev.ParkReason.UNKNOWN_WORKFLOW,
                                   f"workflow {state.saga_type!r} version {state.version} is "
                                   "not registered in this coordinator"))
            return
        if state.seq - state.run_started_seq >= self.budget.max_history:
            run.emit(ev.SagaParked(ev.ParkReason.BUDGET_EXCEEDED,
                                   f"the saga's run holds {state.seq - state.run_started_seq} "
                                   f"entries, the limit is {self.budget.max_history}; use "
                                   "ctx.continue_as_new() for long-lived sagas"))
            return
        execution = self._execution_for(state, run.seq_before, definition)
        before = run.mark()
        try:
            outcome: Outcome = execution.activate(run, update)
        except BudgetExceeded as exceeded:  # the wall clock ran out between two steps
            execution.close()
            outcome = OverBudget(str(exceeded))
        if isinstance(outcome, OverBudget | Crashed):
            run.rollback(before)  # nothing of a cut-short run is journaled
        if isinstance(outcome, Blocked):
            self._remember(state.saga_id, run.state.seq, execution)
            return
        self.forget([state.saga_id])
        match outcome:
            case Returned(value=value):
                try:
                    size = encoded_size(value)
                except TypeError as exc:
                    run.emit(ev.WorkflowFailed(f"the workflow's result is not JSON: {exc}"))
                    return
                if size > self.budget.max_value_bytes:
                    run.emit(ev.WorkflowFailed(
                        f"the workflow's result is {size} bytes, over the limit of "
                        f"{self.budget.max_value_bytes}"))
                    return
                result = orjson.loads(orjson.dumps(value))
                run.finish(ev.SagaCompleted(result, compensated=run.state.compensated))
            case Raised(error=error):
                run.emit(ev.WorkflowFailed(f"{type(error).__name__}: {error}"))
            case Diverged(detail=detail):
                run.emit(ev.SagaParked(ev.ParkReason.NON_DETERMINISM, detail))
            case Foreign(detail=detail):
                run.emit(ev.SagaParked(ev.ParkReason.FOREIGN_AWAITABLE, detail))
            case OverBudget(detail=detail):
                run.emit(ev.SagaParked(ev.ParkReason.BUDGET_EXCEEDED, detail), force=True)
            case Crashed(detail=detail):
                run.emit(ev.SagaParked(ev.ParkReason.WORKFLOW_BUG, detail), force=True)
            case ContinuedAsNew(input=fresh, next_step=next_step):
                # No timer of the old run outlives it; the new run starts at once, with
                # the newest registered version of the workflow.
                for timer in run.state.pending_timers():
                    run.emit(ev.TimerCancelled(timer.timer_id))
                newest = self.registry.latest(state.saga_type)
                run.emit(ev.SagaContinued(fresh, newest.version if newest else state.version,
                                          state.run + 1, first_step=next_step))
                self._activate(run)

    def _execution_for(self, state: SagaState, seq_before: int,
                       definition: WorkflowDefinition) -> Execution:
        cached = self._cache.pop(state.saga_id, None)
        if cached is not None:
            seq, execution = cached
            self._cached_entries -= seq
            if seq == seq_before:
                return execution
            execution.close()
        if seq_before > 0:  # not a fresh start: the coroutine must catch up on its history
            self.replays += 1
        return Execution(definition, state.input, step_timeout=self.step_timeout,
                         first_step=state.run_first_step)

    def _remember(self, saga_id: str, seq: int, execution: Execution) -> None:
        self._cache[saga_id] = (seq, execution)
        self._cached_entries += seq
        while len(self._cache) > self._cache_size or (
                self._cached_entries > self._cached_entries_limit and len(self._cache) > 1):
            _, (entries, evicted) = self._cache.popitem(last=False)
            self._cached_entries -= entries
            evicted.close()

    def _compensate_all(self, run: Recorder) -> None:
        state = run.state
        if -1 not in state.compensate_steps:
            run.emit(ev.CompensationStarted(-1, "abandoned" if state.abandon_reason else
                                            "cancelled" if state.cancel_reason
                                            else "workflow failed"))
        definition = self.registry.get(state.saga_type, state.version)
        policy = definition.compensation_retry if definition else COMPENSATION_RETRY
        if advance_compensation(run, None, -1, policy, self.step_timeout):
            if run.state.abandon_reason:
                run.finish(ev.SagaFailed(f"abandoned: {run.state.abandon_reason}"))
            elif run.state.cancel_reason:
                run.finish(ev.SagaCancelled(run.state.cancel_reason))
            else:
                run.finish(ev.SagaFailed(run.state.workflow_error))


def _cancel_children(run: Recorder) -> None:
    """A cancelled or abandoned saga cancels each child still running."""
    for step, child in sorted(run.state.children.items()):
        if not child.done and not child.cancel_requested:
            run.emit(ev.ChildCancelRequested(step, child.child_id))
