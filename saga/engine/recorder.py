"""The entries of one decision, applied to the saga's state as they are made: the one
place an event becomes a journal entry (``emit``), used by the decider and, through the
runtime, by everything a workflow does."""

from __future__ import annotations

from typing import Protocol

from saga.engine import events as ev
from saga.engine.budget import BudgetExceeded, RunBudget
from saga.engine.state import SagaState, apply


class Recorder:
    def __init__(self, state: SagaState, now_ms: int, budget: RunBudget | None = None
                 ) -> None:
        self.state = state
        self.seq_before = state.seq
        self.now_ms = now_ms
        self.entries: list[ev.Entry] = []
        self.budget = budget or RunBudget()
        self.commands = 0

    def emit(self, event: ev.Event, *, force: bool = False) -> None:
        """Apply and keep ``event``; past the budget, BudgetExceeded (``force``: the
        engine's own park, which must always be written)."""
        if not force:
            self._within_budget(event)
        entry = ev.Entry(self.state.saga_id, self.state.seq, self.now_ms, event)
        self.state = apply(self.state, entry)
        self.entries.append(entry)

    def _within_budget(self, event: ev.Event) -> None:
        if len(self.entries) >= self.budget.max_events:
            raise BudgetExceeded(f"one decision wrote more than {self.budget.max_events} "
                                 "journal entries")
        if isinstance(event, ev.CommandIssued | ev.ChildStarted):
            self.commands += 1
            if self.commands > self.budget.max_commands:
                raise BudgetExceeded(f"one decision issued more than "
                                     f"{self.budget.max_commands} commands")

    def mark(self) -> tuple[SagaState, int, int]:
        """Where the decision stands, to roll back to: an activation cut short (over
        budget, even mid-emit) leaves nothing of itself behind."""
        return self.state, len(self.entries), self.commands

    def rollback(self, mark: tuple[SagaState, int, int]) -> None:
        self.state, count, self.commands = mark
        del self.entries[count:]

    def finish(self, terminal: ev.Event) -> None:
        """End the saga: no timer outlives it (each gets its tombstone on saga.timers)."""
        for timer in self.state.pending_timers():
            self.emit(ev.TimerCancelled(timer.timer_id))
        self.emit(terminal)


class Emitter(Protocol):
    """What code that decides needs: the state so far, the decision's clock, ``emit``."""

    @property
    def state(self) -> SagaState: ...

    @property
    def now_ms(self) -> int: ...

    def emit(self, event: ev.Event) -> None: ...
