"""Bad input never stops the coordinator: it lands in saga.dlq with its reason, or is
recorded and ignored where that is the right call."""

from __future__ import annotations

from saga.codec import AvroCodec
from saga.config import Settings
from saga.dev.audit import read_topic
from saga.engine import events as ev
from saga.engine.inputs import CommandReply, DeliverSignal, ReplyOutcome, StartSaga
from saga.engine.lifecycle import SagaStatus
from saga.kafka.records import RecordCodec
from saga.store.local_projections import LocalProjections
from tests.system import order, running_stack, wait_terminal


def test_poison_inputs_are_dead_lettered_and_processing_goes_on(settings: Settings) -> None:
    big = RecordCodec(max_payload_bytes=10 * 1024 * 1024)
    good = RecordCodec()
    codec = AvroCodec()
    command_record = codec.encode("timer_request", {
        "timer_id": "t", "saga_id": "x", "action": "SCHEDULE", "due_ms": 1, "purpose": "p"})
    start = good.encode_inbox("trunc", StartSaga("order", order("trunc")))
    with running_stack(settings) as stack:
        stack.send("live-1", StartSaga("order", order("live-1")))
        stack.flush()
        stack.wait_until(lambda s: "live-1" in s and s["live-1"].status is SagaStatus.WAITING,
                         60)
        expected = {
            "garbage": (b"garbage", b"\x00\x01not avro at all"),
            "truncated": (b"trunc", start[:-4]),
            "unknown-schema": (b"u", b"\xc3\x01" + b"\x07" * 8 + b"\x00"),
            "wrong-kind": (b"x", command_record),
            "tombstone": (b"t", None),
            "oversized": (b"big", big.encode_inbox("big", StartSaga(
                "order", {**order("big"), "note": "x" * (600 * 1024)}))),
            "unknown-type": (b"u-1", good.encode_inbox("u-1", StartSaga("no-such-saga", {}))),
            "unknown-saga": (b"ghost", good.encode_inbox("ghost", DeliverSignal("x", None))),
            "never-issued": (b"live-1", good.encode_inbox("live-1", CommandReply(
                "live-1:9:1", "payments", ReplyOutcome.OK, {}, ""))),
            "key-mismatch": (b"other-key", good.encode_inbox("live-1",
                                                             DeliverSignal("x", None))),
        }
        for key, value in expected.values():
            stack.send_raw(key, value)
        # a duplicate reply for a real command: recorded in the history, not dead-lettered
        stack.send("live-1", CommandReply("live-1:0:1", "payments", ReplyOutcome.OK,
                                          {"dup": True}, ""))
        stack.send("live-1", DeliverSignal("warehouse_picked", None))
        stack.send("after", StartSaga("order", order("after")))
        stack.send("after", DeliverSignal("warehouse_picked", None))
        stack.flush()
        states = wait_terminal(stack, ["live-1", "after"])
        # The bad records sit on other partitions than these two sagas: wait for their
        # letters too before stopping, or a slow partition's batch may not be in yet.
        dlq = settings.topic("saga.dlq")
        stack.wait_until(lambda _: len(read_topic(settings.kafka, dlq)) >= len(expected), 60)
        assert stack.dead() == []

    assert states["live-1"].status is SagaStatus.COMPLETED
    assert states["after"].status is SagaStatus.COMPLETED
    letters = read_topic(settings.kafka, dlq)
    reasons = {}
    for letter_key, letter, headers in letters:
        header = dict(headers)
        record = good.decode_dead_letter(letter)
        assert record["component"] == "coordinator"
        assert record["source_topic"] == settings.topic("saga.inbox")
        assert header["saga.dlq.reason"].decode() == record["reason"]
        assert record["detail"]
        reasons[letter_key] = (record["reason"], record["detail"])
    assert {k: r for k, (r, _) in reasons.items()} == {
        b"garbage": "undecodable", b"trunc": "undecodable", b"u": "undecodable",
        b"x": "undecodable", b"t": "undecodable", b"big": "undecodable",
        b"u-1": "unknown_saga_type", b"ghost": "unknown_saga",
        b"live-1": "reply_for_unknown_command", b"other-key": "key_mismatch"}
    assert "NotFramed" in reasons[b"garbage"][1]
    assert "TruncatedRecord" in reasons[b"trunc"][1]
    assert "UnknownSchema" in reasons[b"u"][1]
    assert "expected a inbox_message record" in reasons[b"x"][1]
    assert "PayloadTooLarge" in reasons[b"big"][1]
    assert "no workflow named 'no-such-saga'" in reasons[b"u-1"][1]
    # the dead letter keeps the original bytes, so an operator can redrive them
    for letter_key, letter, _ in letters:
        if letter_key == b"garbage":
            assert good.decode_dead_letter(letter)["value"] == b"\x00\x01not avro at all"
    stack_history = _ignored_reasons(settings, "live-1")
    assert stack_history == ["duplicate_reply"]


def _ignored_reasons(settings: Settings, saga_id: str) -> list[str]:
    projections = LocalProjections(settings)
    try:
        return [e.event.reason for e in projections.history(saga_id)
                if isinstance(e.event, ev.InputIgnored)]
    finally:
        projections.close()
