"""Catch-up, rebuild and audits take each journal entry only as its saga's next one:
a gap or a repeated seq (two writers: a zombie) is an error, never passed over."""

from __future__ import annotations

import pytest

from saga.engine import events as ev
from saga.engine.state import SagaState, apply, check_sequence
from saga.errors import JournalGap


def entry(seq: int) -> ev.Entry:
    event = ev.SagaStarted("order", 1, {}) if seq == 0 else ev.SignalReceived("s", seq)
    return ev.Entry("o-1", seq, 1000 + seq, event)


def test_the_next_entry_passes() -> None:
    state = apply(SagaState("o-1"), entry(0))
    check_sequence(state, entry(1), "j/0/7")


def test_a_gap_is_an_error_with_where_it_is() -> None:
    with pytest.raises(JournalGap, match=r"entry 3 at j/0/9 but the saga's history stops at 1"):
        check_sequence(apply(SagaState("o-1"), entry(0)), entry(3), "j/0/9")


def test_a_repeated_seq_is_an_error_naming_two_writers() -> None:
    state = apply(apply(SagaState("o-1"), entry(0)), entry(1))
    with pytest.raises(JournalGap, match="entry 1 comes twice") as caught:
        check_sequence(state, entry(1), "j/0/12")
    assert "two coordinators wrote this saga" in str(caught.value)
    assert caught.value.hint
    assert "report it" in caught.value.hint
