"""Drive the pure engine by hand: no Kafka, no RocksDB, just decisions."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from saga.engine import events as ev
from saga.engine.budget import RunBudget
from saga.engine.decider import Decider, Decision
from saga.engine.ids import parse_command_id
from saga.engine.inputs import (
    CancelSaga,
    CommandReply,
    DeliverSignal,
    FireTimer,
    Input,
    ReplyOutcome,
    StartSaga,
)
from saga.engine.lifecycle import SagaStatus
from saga.engine.state import SagaState, fold
from saga.engine.workflow import WorkflowRegistry


class Sim:
    def __init__(self, registry: WorkflowRegistry, *, cache_size: int = 100,
                 always_replay: bool = False, step_timeout: timedelta | None = None,
                 budget: RunBudget | None = None) -> None:
        self.engine = Decider(registry, cache_size=cache_size, step_timeout=step_timeout,
                              budget=budget)
        self.states: dict[str, SagaState] = {}
        self.history: dict[str, list[ev.Entry]] = {}
        self.always_replay = always_replay
        self.now_ms = 1_000

    def send(self, saga_id: str, message: Input) -> Decision:
        if self.always_replay:
            self.engine.forget()
        self.now_ms += 10
        decision = self.engine.decide(saga_id, self.states.get(saga_id), message, self.now_ms)
        if decision.state is not None and decision.entries:
            self.states[saga_id] = decision.state
            self.history.setdefault(saga_id, []).extend(decision.entries)
        return decision

    def start(self, saga_id: str, saga_type: str, data: Any = None) -> Decision:
        return self.send(saga_id, StartSaga(saga_type, data))

    def reply(self, saga_id: str, command_id: str, result: Any = None, *,
              outcome: str = "OK", error: str = "") -> Decision:
        return self.send(saga_id, CommandReply(command_id, self.service_of(saga_id, command_id),
                                               ReplyOutcome(outcome), result, error))

    def service_of(self, saga_id: str, command_id: str) -> str:
        """The service the saga sent ``command_id`` to (only it may answer)."""
        state, ref = self.states.get(saga_id), parse_command_id(command_id)
        if state is None or ref is None:
            return "svc"
        issued = (state.steps if ref.kind == ev.CommandKind.ACTION
                  else state.compensations).get(ref.step)
        return issued.service if issued is not None else "svc"

    def signal(self, saga_id: str, name: str, payload: Any = None) -> Decision:
        return self.send(saga_id, DeliverSignal(name, payload))

    def cancel(self, saga_id: str, reason: str = "by test") -> Decision:
        return self.send(saga_id, CancelSaga(reason))

    def fire(self, saga_id: str, timer_id: str) -> Decision:
        return self.send(saga_id, FireTimer(timer_id, 0))

    def fire_pending(self, saga_id: str, purpose: str | None = None) -> list[str]:
        """Fire every pending timer (of ``purpose``), earliest first; their ids."""
        timers = sorted((t for t in self.states[saga_id].pending_timers()
                         if purpose is None or t.purpose == purpose), key=lambda t: t.due_ms)
        for timer in timers:
            self.fire(saga_id, timer.timer_id)
        return [t.timer_id for t in timers]

    def commands(self, saga_id: str) -> list[ev.CommandIssued]:
        return [e.event for e in self.history.get(saga_id, [])
                if isinstance(e.event, ev.CommandIssued)]

    def last_command(self, saga_id: str) -> ev.CommandIssued:
        return self.commands(saga_id)[-1]

    def open_commands(self, saga_id: str) -> list[ev.CommandIssued]:
        state = self.states[saga_id]
        return [c for c in self.commands(saga_id)
                if (state.command_by_id(c.command_id) is not None
                    and state.command_by_id(c.command_id).outcome is None)]  # type: ignore[union-attr]

    def types(self, saga_id: str) -> list[str]:
        return [e.event.type_name for e in self.history.get(saga_id, [])]

    def status(self, saga_id: str) -> SagaStatus | None:
        return self.states[saga_id].status

    def refold(self, saga_id: str) -> SagaState:
        return fold(saga_id, self.history[saga_id])
