"""A saga's state: a pure fold over its journal entries.

`apply(state, entry)` returns a new state and touches nothing else; `fold(entries)`
rebuilds any saga from its history. The projection stores the folded state as a cache,
the replay engine reads it to answer a workflow's calls, and `saga rebuild` proves the
cache equals a fresh fold of the journal.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from saga.engine import events as ev
from saga.engine.lifecycle import SagaStatus, transition


@dataclass(frozen=True)
class Step:
    """One ctx.call: the latest attempt and its outcome."""

    step: int
    service: str
    name: str
    input: Any
    compensate: tuple[str, str] | None
    attempt: int
    command_id: str
    outcome: str | None = None  # None while in flight, "ok" or "failed"
    result: Any = None
    reason: str = ""
    business: bool = False
    completed_order: int = -1  # order of successful completion: compensations run newest first


@dataclass(frozen=True)
class Compensation:
    step: int  # the action it undoes
    service: str
    name: str
    attempt: int
    command_id: str
    outcome: str | None = None
    error: str = ""


@dataclass(frozen=True)
class Timer:
    timer_id: str
    step: int
    purpose: str
    due_ms: int
    status: str = "pending"  # pending, fired, cancelled


@dataclass(frozen=True)
class SagaState:
    saga_id: str
    saga_type: str = ""
    version: int = 0
    input: Any = None
    status: SagaStatus | None = None
    seq: int = 0  # entries folded so far; the next entry's seq
    started_at_ms: int = 0
    updated_at_ms: int = 0
    ended_at_ms: int = 0
    result: Any = None
    error: str = ""
    last_error: str = ""  # the newest failure seen, for sagas stuck compensating
    steps: dict[int, Step] = field(default_factory=dict)
    compensations: dict[int, Compensation] = field(default_factory=dict)
    values: dict[int, Any] = field(default_factory=dict)
    signals: tuple[tuple[str, Any], ...] = ()
    waits: dict[int, str] = field(default_factory=dict)  # open waits: step -> signal name
    resolved_waits: dict[int, int] = field(default_factory=dict)  # step -> signal index
    compensate_steps: dict[int, bool] = field(default_factory=dict)  # step -> finished
    timed_out_waits: dict[int, bool] = field(default_factory=dict)
    timers: dict[str, Timer] = field(default_factory=dict)
    completions: int = 0
    workflow_error: str = ""  # set once the workflow function raised
    cancel_reason: str = ""
    parked_reason: str = ""
    compensated: bool = False

    @property
    def exists(self) -> bool:
        return self.status is not None

    @property
    def terminal(self) -> bool:
        return self.status is not None and self.status.terminal

    @property
    def workflow_done(self) -> bool:
        """The workflow coroutine has nothing left to do: it failed or was cancelled."""
        return bool(self.workflow_error or self.cancel_reason)

    def consumed_signals(self) -> set[int]:
        return set(self.resolved_waits.values())

    def command_by_id(self, command_id: str) -> Step | Compensation | None:
        for step in self.steps.values():
            if step.command_id == command_id:
                return step
        for comp in self.compensations.values():
            if comp.command_id == command_id:
                return comp
        return None

    def pending_timers(self) -> list[Timer]:
        return [t for t in self.timers.values() if t.status == "pending"]

    def timer(self, timer_id: str) -> Timer | None:
        return self.timers.get(timer_id)

    def in_flight(self) -> int:
        return sum(1 for s in self.steps.values() if s.outcome is None) + sum(
            1 for c in self.compensations.values() if c.outcome is None)

    def summary(self) -> dict[str, Any]:
        """What `saga status --json` shows."""
        return {
            "saga_id": self.saga_id, "type": self.saga_type, "version": self.version,
            "status": self.status.value if self.status else None, "result": self.result,
            "error": self.error or None, "last_error": self.last_error or None,
            "events": self.seq, "started_at_ms": self.started_at_ms,
            "updated_at_ms": self.updated_at_ms, "ended_at_ms": self.ended_at_ms or None,
            "waiting_for": sorted(set(self.waits.values())), "in_flight": self.in_flight(),
            "timers": [{"timer_id": t.timer_id, "purpose": t.purpose, "due_ms": t.due_ms}
                       for t in self.pending_timers()],
        }

    def to_bytes(self) -> bytes:
        """Canonical JSON: the same state always gives the same bytes (checksums)."""
        return orjson.dumps(self, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SORT_KEYS)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = orjson.loads(self.to_bytes())
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SagaState:
        def steps(raw: dict[str, Any]) -> dict[int, Step]:
            out = {}
            for k, v in raw.items():
                comp = v.get("compensate")
                out[int(k)] = Step(**{**v, "compensate": tuple(comp) if comp else None})
            return out

        return cls(**{
            **data,
            "status": SagaStatus(data["status"]) if data["status"] else None,
            "steps": steps(data["steps"]),
            "compensations": {int(k): Compensation(**v)
                              for k, v in data["compensations"].items()},
            "values": {int(k): v for k, v in data["values"].items()},
            "waits": {int(k): v for k, v in data["waits"].items()},
            "resolved_waits": {int(k): v for k, v in data["resolved_waits"].items()},
            "compensate_steps": {int(k): v for k, v in data["compensate_steps"].items()},
            "timed_out_waits": {int(k): v for k, v in data["timed_out_waits"].items()},
            "timers": {k: Timer(**v) for k, v in data["timers"].items()},
            "signals": tuple((s[0], s[1]) for s in data["signals"]),
        })


def fold(saga_id: str, entries: Iterable[ev.Entry]) -> SagaState:
    state = SagaState(saga_id)
    for entry in entries:
        state = apply(state, entry)
    return state


def apply(state: SagaState, entry: ev.Entry) -> SagaState:
    """The state after ``entry``; raises IllegalTransition on an impossible history."""
    if entry.seq != state.seq:
        raise ValueError(f"saga {state.saga_id}: entry seq {entry.seq}, expected {state.seq}")
    changes = _changes(state, entry.event, entry.at_ms)
    changes["seq"] = state.seq + 1
    changes["updated_at_ms"] = entry.at_ms
    state = _evolve(state, changes)
    status = _derive_status(state, entry.event)
    if status is not None and status != state.status:
        state = _evolve(state, {"status": transition(state.status, status)})
    return state


def _evolve(state: SagaState, changes: dict[str, Any]) -> SagaState:
    """A copy of ``state`` with ``changes``: dataclasses.replace without re-running
    __init__, which was the fold's main cost (it runs for every event decided or
    replayed). The result is as frozen as the original."""
    copy = object.__new__(SagaState)
    fields = copy.__dict__
    fields.update(state.__dict__)
    fields.update(changes)
    return copy


def _changes(s: SagaState, e: ev.Event, at_ms: int) -> dict[str, Any]:
    """The fields ``e`` changes."""
    match e:
        case ev.SagaStarted():
            return dict(saga_type=e.saga_type, version=e.version, input=e.input,
                           started_at_ms=at_ms)
        case ev.CommandIssued(kind=ev.ACTION):
            step = Step(e.step, e.service, e.name, e.input, e.compensate, e.attempt,
                        e.command_id)
            return dict(steps={**s.steps, e.step: step})
        case ev.CommandIssued():
            comp = Compensation(e.step, e.service, e.name, e.attempt, e.command_id)
            return dict(compensations={**s.compensations, e.step: comp})
        case ev.CommandCompleted(kind=ev.ACTION):
            done = replace(s.steps[e.step], outcome="ok", result=e.result,
                           completed_order=s.completions)
            return dict(steps={**s.steps, e.step: done}, completions=s.completions + 1)
        case ev.CommandCompleted():
            comp = replace(s.compensations[e.step], outcome="ok", error="")
            return dict(compensations={**s.compensations, e.step: comp})
        case ev.CommandFailed(kind=ev.ACTION):
            failed = replace(s.steps[e.step], outcome="failed", reason=e.reason,
                             business=e.business)
            return dict(steps={**s.steps, e.step: failed},
                           last_error=f"{failed.service}.{failed.name}: {e.reason}")
        case ev.CommandFailed():
            comp = replace(s.compensations[e.step], outcome="failed", error=e.reason)
            return dict(compensations={**s.compensations, e.step: comp},
                           last_error=f"{comp.service}.{comp.name}: {e.reason}")
        case ev.ValueRecorded():
            return dict(values={**s.values, e.step: e.value})
        case ev.SignalReceived():
            return dict(signals=(*s.signals, (e.name, e.payload)))
        case ev.WaitStarted():
            return dict(waits={**s.waits, e.step: e.signal})
        case ev.WaitResolved():
            waits = {k: v for k, v in s.waits.items() if k != e.step}
            return dict(waits=waits,
                           resolved_waits={**s.resolved_waits, e.step: e.signal_index})
        case ev.CommandTimedOut():
            failed = replace(s.steps[e.step], outcome="failed", reason="timeout",
                             business=False)
            return dict(steps={**s.steps, e.step: failed},
                        last_error=f"{failed.service}.{failed.name}: no reply in time")
        case ev.WaitTimedOut():
            waits = {k: v for k, v in s.waits.items() if k != e.step}
            return dict(waits=waits, timed_out_waits={**s.timed_out_waits, e.step: True})
        case ev.TimerScheduled():
            timer = Timer(e.timer_id, e.step, e.purpose, e.due_ms)
            return dict(timers={**s.timers, e.timer_id: timer})
        case ev.TimerCancelled():
            return dict(timers={**s.timers,
                                e.timer_id: replace(s.timers[e.timer_id], status="cancelled")})
        case ev.TimerFired():
            return dict(timers={**s.timers,
                                e.timer_id: replace(s.timers[e.timer_id], status="fired")})
        case ev.CompensationStarted():
            return dict(compensate_steps={**s.compensate_steps, e.step: False},
                           compensated=True)
        case ev.CompensationFinished():
            return dict(compensate_steps={**s.compensate_steps, e.step: True})
        case ev.CancelRequested():
            return dict(cancel_reason=e.reason or "cancelled")
        case ev.WorkflowFailed():
            return dict(workflow_error=e.error, last_error=e.error)
        case ev.SagaCompleted():
            return dict(result=e.result, ended_at_ms=at_ms)
        case ev.SagaFailed():
            return dict(error=e.error, ended_at_ms=at_ms)
        case ev.SagaCancelled():
            return dict(error=e.reason, ended_at_ms=at_ms)
        case ev.SagaParked():
            return dict(parked_reason=e.reason, error=f"{e.reason}: {e.detail}")
    return {}


def _derive_status(s: SagaState, e: ev.Event) -> SagaStatus | None:
    match e:
        case ev.SagaStarted():
            return SagaStatus.RUNNING
        case ev.SagaCompleted():
            return SagaStatus.COMPENSATED if e.compensated else SagaStatus.COMPLETED
        case ev.SagaFailed():
            return SagaStatus.FAILED
        case ev.SagaCancelled():
            return SagaStatus.CANCELLED
        case ev.SagaParked():
            return SagaStatus.PARKED
        case ev.InputIgnored():
            return None
    if s.status is None or s.status.terminal or s.status is SagaStatus.PARKED:
        return None
    compensating = s.workflow_done or any(not done for done in s.compensate_steps.values())
    if compensating:
        return SagaStatus.COMPENSATING
    if (s.waits or s.pending_timers()) and s.in_flight() == 0:
        return SagaStatus.WAITING
    return SagaStatus.RUNNING
