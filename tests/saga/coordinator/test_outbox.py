"""The outbox maps one input's decision to records all or nothing (no Kafka needed)."""

from __future__ import annotations

import pytest

from saga.config import Settings
from saga.coordinator.outbox import Outbox, Topics
from saga.engine import events as ev
from saga.engine.state import SagaState, apply
from saga.errors import PayloadTooLarge
from saga.kafka.records import RecordCodec


def _decided(state: SagaState, *events: ev.Event) -> tuple[SagaState, list[ev.Entry]]:
    entries = []
    for event in events:
        entry = ev.Entry(state.saga_id, state.seq, 1, event)
        state = apply(state, entry)
        entries.append(entry)
    return state, entries


def test_a_record_over_kafkas_limit_is_refused_and_nothing_of_the_input_is_kept() -> None:
    outbox = Outbox(Topics.of(Settings()), RecordCodec(max_payload_bytes=4 * 1024 * 1024),
                    "coordinator")
    started, first = _decided(SagaState("a"), ev.SagaStarted("w", 1, {}))
    outbox.decided(started, first, 0, "inbox/0/0", None)
    kept = list(outbox.records)
    huge = ev.CommandIssued(0, "b:0:1", "svc", "do", ev.CommandKind.ACTION, 1,
                            {"blob": "x" * (1100 * 1024)})
    state, entries = _decided(_decided(SagaState("b"), ev.SagaStarted("w", 1, {}))[0], huge)
    with pytest.raises(PayloadTooLarge, match=r"over the \d+-byte limit of a Kafka record"):
        outbox.decided(state, entries, 1, "inbox/1/0", None)
    assert outbox.records == kept
    assert outbox.services == set()
    assert outbox.commands == 0
    assert set(outbox.states) == {"a"}
