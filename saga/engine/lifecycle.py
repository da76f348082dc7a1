"""The saga lifecycle: one Enum and one transition table that refuses illegal moves."""

from __future__ import annotations

from enum import StrEnum

from saga.errors import IllegalTransition


class SagaStatus(StrEnum):
    RUNNING = "RUNNING"
    WAITING = "WAITING"  # on a signal or a timer, nothing in flight
    COMPENSATING = "COMPENSATING"  # running compensations, newest first
    PARKED = "PARKED"  # non-determinism or a workflow bug: needs an operator
    COMPLETED = "COMPLETED"
    COMPENSATED = "COMPENSATED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({SagaStatus.COMPLETED, SagaStatus.COMPENSATED, SagaStatus.FAILED,
                      SagaStatus.CANCELLED})

_S = SagaStatus
_ACTIVE_EXITS = frozenset({_S.RUNNING, _S.WAITING, _S.COMPENSATING, _S.PARKED, _S.COMPLETED,
                           _S.COMPENSATED, _S.FAILED, _S.CANCELLED})
TRANSITIONS: dict[SagaStatus | None, frozenset[SagaStatus]] = {
    None: frozenset({_S.RUNNING}),
    _S.RUNNING: _ACTIVE_EXITS,
    _S.WAITING: _ACTIVE_EXITS,
    # A compensating saga cannot simply complete: it ends compensated, failed or cancelled,
    # or returns to running once an explicit ctx.compensate() has finished.
    _S.COMPENSATING: _ACTIVE_EXITS - {_S.COMPLETED},
    # An operator resumes a parked saga, or gives up on it.
    _S.PARKED: frozenset({_S.RUNNING, _S.WAITING, _S.COMPENSATING, _S.FAILED, _S.CANCELLED}),
    _S.COMPLETED: frozenset(),
    _S.COMPENSATED: frozenset(),
    _S.FAILED: frozenset(),
    _S.CANCELLED: frozenset(),
}


def transition(current: SagaStatus | None, target: SagaStatus) -> SagaStatus:
    if current == target:
        return target
    if target not in TRANSITIONS[current]:
        name = current.value if current else "(new)"
        raise IllegalTransition(f"a saga cannot go from {name} to {target.value}")
    return target
