from __future__ import annotations

import dataclasses

import orjson
import pytest

from saga.engine import events as ev
from saga.engine.lifecycle import SagaStatus
from saga.engine.state import SagaState, apply, fold
from saga.errors import CodecError, IllegalTransition
from tests.saga.engine.sim import Sim
from tests.saga.engine.test_decider import ORDER, order_registry


def _full_history() -> Sim:
    sim = Sim(order_registry())
    sim.start("o-1", "order", ORDER)
    sim.signal("o-1", "warehouse_picked", {"at": 1})
    sim.reply("o-1", "o-1:0:1", {"charge": 1})
    sim.reply("o-1", "o-1:1:1", outcome="BUSINESS_ERROR", error="out_of_stock")
    sim.reply("o-1", "o-1:0c:1", outcome="TECHNICAL_ERROR", error="x")
    sim.fire_pending("o-1")
    sim.reply("o-1", "o-1:0c:2", {})
    return sim


def test_fold_equals_the_incremental_state() -> None:
    sim = _full_history()
    assert sim.refold("o-1") == sim.states["o-1"]
    assert sim.states["o-1"].status is SagaStatus.COMPENSATED


def test_state_survives_json_round_trip() -> None:
    state = _full_history().states["o-1"]
    assert SagaState.from_json(orjson.loads(orjson.dumps(state.to_json()))) == state


def test_events_survive_their_body_round_trip() -> None:
    for entry in _full_history().history["o-1"]:
        body = orjson.loads(orjson.dumps(entry.event.to_body()))
        assert ev.from_body(entry.event.type_name, body) == entry.event


def test_unknown_or_malformed_events_are_codec_errors() -> None:
    with pytest.raises(CodecError, match="unknown journal event type"):
        ev.from_body("Teleported", {})
    with pytest.raises(CodecError, match="does not fit"):
        ev.from_body("SagaStarted", {"nope": 1})
    whole = {"saga_type": "order", "version": 1, "input": {}, "trace": "", "parent": "",
             "parent_step": -1}
    with pytest.raises(CodecError, match="does not fit"):  # every field, and one unknown
        ev.from_body("SagaStarted", {**whole, "nope": 1})


def test_an_event_read_back_equals_the_one_written_with_or_without_defaults() -> None:
    """A body of this version names every field (the fast path); an older one leaves
    out fields added since, which take their defaults."""
    issued = ev.CommandIssued(0, "o-1:0:1", "payments", "charge", ev.CommandKind.ACTION, 1,
                              {"amount": 5}, ("payments", "refund"), deadline_ms=99)
    body = orjson.loads(orjson.dumps(issued.to_body()))
    read = ev.from_body("CommandIssued", body)
    assert read == issued
    assert read.kind is ev.CommandKind.ACTION
    assert read.compensate == ("payments", "refund")
    with pytest.raises(dataclasses.FrozenInstanceError):
        read.attempt = 2  # type: ignore[misc]
    older = {k: v for k, v in body.items() if k != "deadline_ms"}
    assert ev.from_body("CommandIssued", older) == dataclasses.replace(issued, deadline_ms=0)


def test_fold_refuses_gaps_and_impossible_histories() -> None:
    start = ev.Entry("s", 0, 1, ev.SagaStarted("order", 1, {}))
    with pytest.raises(ValueError, match="expected 0"):
        fold("s", [ev.Entry("s", 1, 1, ev.SagaStarted("order", 1, {}))])
    done = apply(apply(SagaState("s"), start),
                 ev.Entry("s", 1, 2, ev.SagaCompleted({}, compensated=False)))
    assert done.status is SagaStatus.COMPLETED
    with pytest.raises(IllegalTransition):
        apply(done, ev.Entry("s", 2, 3, ev.SagaParked(ev.ParkReason.NON_DETERMINISM, "y")))
