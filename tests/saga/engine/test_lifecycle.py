from __future__ import annotations

import pytest

from saga.engine.lifecycle import TERMINAL, TRANSITIONS, SagaStatus, transition
from saga.errors import IllegalTransition


def test_every_status_has_a_row() -> None:
    assert set(TRANSITIONS) == {None, *SagaStatus}


@pytest.mark.parametrize("terminal", [s for s in SagaStatus if s in TERMINAL])
def test_terminal_states_are_final(terminal: SagaStatus) -> None:
    assert terminal.terminal
    for target in SagaStatus:
        if target is not terminal:
            with pytest.raises(IllegalTransition, match=f"from {terminal.value}"):
                transition(terminal, target)


def test_legal_and_illegal_moves() -> None:
    assert transition(None, SagaStatus.RUNNING) is SagaStatus.RUNNING
    assert transition(SagaStatus.RUNNING, SagaStatus.WAITING) is SagaStatus.WAITING
    assert transition(SagaStatus.PARKED, SagaStatus.RUNNING) is SagaStatus.RUNNING
    with pytest.raises(IllegalTransition, match=r"from \(new\) to COMPLETED"):
        transition(None, SagaStatus.COMPLETED)
    with pytest.raises(IllegalTransition):
        transition(SagaStatus.COMPENSATING, SagaStatus.COMPLETED)
    with pytest.raises(IllegalTransition):
        transition(SagaStatus.PARKED, SagaStatus.COMPLETED)
