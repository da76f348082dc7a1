from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from saga import _data
from saga.codec import KINDS, AvroCodec, dumps_body, loads_body
from saga.errors import (
    CodecError,
    NotFramed,
    PayloadTooLarge,
    SchemaMismatch,
    TruncatedRecord,
    UnknownSchema,
)

SAMPLES: dict[str, list[dict[str, Any]]] = {
    "inbox_message": [
        {"saga_id": "o-1", "message_id": "m-1", "sent_at_ms": 1,
         "body": ("saga.Start", {"saga_type": "order", "input": b'{"id":"o-1"}',
                                 "parent": "", "parent_step": -1})},
        {"saga_id": "o-1", "message_id": "m-2", "sent_at_ms": 2,
         "body": ("saga.Signal", {"name": "warehouse_picked", "payload": b"null"})},
        {"saga_id": "o-1", "message_id": "m-3", "sent_at_ms": 3,
         "body": ("saga.Cancel", {"reason": "customer asked"})},
        {"saga_id": "o-1", "message_id": "m-4", "sent_at_ms": 4,
         "body": ("saga.Reply", {"command_id": "o-1/0/1", "service": "payments",
                                 "outcome": "BUSINESS_ERROR", "result": b"null",
                                 "error": "card_declined"})},
        {"saga_id": "o-1", "message_id": "m-5", "sent_at_ms": 5,
         "body": ("saga.TimerFired", {"timer_id": "o-1/t/3", "due_ms": 99})},
        {"saga_id": "o-1", "message_id": "m-6", "sent_at_ms": 6,
         "body": ("saga.ChildEnded", {"child_id": "o-1.3", "status": "COMPLETED",
                                      "result": b"{}", "error": ""})},
        {"saga_id": "o-1", "message_id": "m-7", "sent_at_ms": 7,
         "body": ("saga.Update", {"update_id": "u-1", "name": "add_note",
                                  "payload": b'"hi"'})},
    ],
    "journal_event": [
        {"saga_id": "o-1", "seq": 7, "type": "CommandIssued", "at_ms": 10,
         "body": b'{"step":3}', "cause": "inbox:0:17"},
    ],
    "command": [
        {"command_id": "o-1/2/1", "saga_id": "o-1", "saga_type": "order", "service": "payments",
         "name": "refund", "kind": "COMPENSATION", "attempt": 1, "issued_at_ms": 5,
         "reply_topic": "saga.inbox", "body": b"{}"},
    ],
    "timer_request": [
        {"timer_id": "o-1/t/4", "saga_id": "o-1", "action": "SCHEDULE", "due_ms": 1000,
         "purpose": "retry"},
    ],
    "dead_letter": [
        {"source_topic": "saga.inbox", "source_partition": 2, "source_offset": 41,
         "key": b"o-1", "value": None, "reason": "undecodable", "detail": "NotFramed",
         "component": "coordinator", "at_ms": 3, "cut": []},
        {"source_topic": "saga.inbox", "source_partition": 0, "source_offset": 7,
         "key": b"k" * 256, "value": None, "reason": "key_mismatch", "detail": "cut",
         "component": "coordinator", "at_ms": 4,
         "cut": [{"field": "key", "size": 532480, "sha256": b"\x01" * 32},
                 {"field": "value", "size": 600000, "sha256": b"\x02" * 32}]},
    ],
    "state_change": [
        {"key": "step/o-1:0", "version": 1_764_000_000_000_000,
         "value": b'{"command_id":"o-1:0:1","reply":{}}', "command_id": "o-1:0:1"},
        {"key": "data/ledger/o-1:0", "version": 2, "value": None, "command_id": "o-1:0:2"},
    ],
    "schedule_entry": [
        {"schedule_id": "nightly", "saga_id": "schedule:nightly",
         "entry": b'{"cron":"0 2 * * *","runs":3}', "at_ms": 9},
    ],
}


@pytest.fixture(scope="module")
def codec() -> AvroCodec:
    return AvroCodec()


def test_every_kind_has_a_sample() -> None:
    assert set(SAMPLES) == set(KINDS)


@pytest.mark.parametrize(("kind", "record"),
                         [(k, r) for k, rs in SAMPLES.items() for r in rs])
def test_every_message_kind_round_trips(codec: AvroCodec, kind: str, record: dict[str, Any]
                                        ) -> None:
    data = codec.encode(kind, record)
    assert data[:2] == b"\xc3\x01"
    assert codec.decode(data) == (kind, record)
    assert codec.decode(data, expect=kind) == (kind, record)


def test_fingerprint_is_the_avro_rabin_fingerprint(codec: AvroCodec) -> None:
    # The Avro spec's CRC-64-AVRO of the schema "null" is 0x63dd24e7cc258f8a,
    # written little-endian after the marker.
    from fastavro.schema import fingerprint

    assert bytes.fromhex(fingerprint('"null"', "CRC-64-AVRO")) == (
        0x63DD24E7CC258F8A).to_bytes(8, "little")


def test_previous_schema_version_reads_with_the_newest(codec: AvroCodec) -> None:
    assert codec.versions("journal_event") == [1, 2]
    old = {"saga_id": "o-9", "seq": 0, "type": "SagaStarted", "at_ms": 1, "body": b"{}"}
    data = codec.encode("journal_event", old, version=1)
    kind, record = codec.decode(data)
    assert kind == "journal_event"
    assert record == {**old, "cause": None}  # v2's new field takes its default


def test_a_dead_letter_v1_reads_as_one_that_cut_nothing(codec: AvroCodec) -> None:
    old = {k: v for k, v in SAMPLES["dead_letter"][0].items() if k != "cut"}
    assert codec.decode(codec.encode("dead_letter", old, version=1)) == (
        "dead_letter", {**old, "cut": []})


def test_a_build_without_the_newer_schema_says_unknown_schema(
        codec: AvroCodec, tmp_path: Path) -> None:
    for path in (p for p in _data.schema_dir().iterdir() if p.name.endswith(".avsc")):
        if path.name != "journal_event.v2.avsc":
            (tmp_path / path.name).write_bytes(path.read_bytes())
    older_build = AvroCodec(tmp_path)
    newer = codec.encode("journal_event", SAMPLES["journal_event"][0])
    with pytest.raises(UnknownSchema, match="unknown schema fingerprint"):
        older_build.decode(newer)


@pytest.mark.parametrize("garbage", [b"", b"\x00", b"hello world", b"{\"json\": true}",
                                     bytes(range(256))])
def test_garbage_is_not_framed(codec: AvroCodec, garbage: bytes) -> None:
    with pytest.raises(NotFramed, match="single-object marker"):
        codec.decode(garbage)


def test_truncated_records(codec: AvroCodec) -> None:
    data = codec.encode("command", SAMPLES["command"][0])
    with pytest.raises(TruncatedRecord, match="header"):
        codec.decode(data[:6])
    for cut in (11, len(data) // 2, len(data) - 1):
        with pytest.raises(TruncatedRecord, match="ends early"):
            codec.decode(data[:cut])


def test_unknown_fingerprint(codec: AvroCodec) -> None:
    with pytest.raises(UnknownSchema):
        codec.decode(b"\xc3\x01" + b"\x01" * 8 + b"\x00")


def test_stray_bytes_and_wrong_kind(codec: AvroCodec) -> None:
    data = codec.encode("timer_request", SAMPLES["timer_request"][0])
    with pytest.raises(SchemaMismatch, match="stray"):
        codec.decode(data + b"\x00")
    with pytest.raises(SchemaMismatch, match="expected a command"):
        codec.decode(data, expect="command")


def test_encoding_a_record_that_does_not_fit(codec: AvroCodec) -> None:
    bad = {**SAMPLES["timer_request"][0], "due_ms": "tomorrow"}
    with pytest.raises(SchemaMismatch, match="does not fit"):
        codec.encode("timer_request", bad)
    with pytest.raises(SchemaMismatch):
        codec.encode("timer_request", {"timer_id": "only"})
    with pytest.raises(CodecError, match="unknown message kind"):
        codec.encode("nope", {})


def test_codec_errors_are_not_retryable() -> None:
    for error in (NotFramed, TruncatedRecord, UnknownSchema, SchemaMismatch):
        assert error("x").retryable is False


def test_json_bodies() -> None:
    body = {"b": [1, 2], "a": "é"}
    data = dumps_body(body)
    assert data == b'{"a":"\xc3\xa9","b":[1,2]}'  # sorted keys: stable bytes for dedup
    assert loads_body(data) == body
    with pytest.raises(CodecError, match="not valid JSON"):
        loads_body(b"{nope")
    with pytest.raises(PayloadTooLarge, match="exceeds the limit"):
        dumps_body({"x": "y" * 100}, limit=50)
    with pytest.raises(PayloadTooLarge):
        loads_body(b"[" + b"1," * 100 + b"1]", limit=10)
    with pytest.raises(CodecError, match="not JSON-serialisable"):
        dumps_body({"x": object()})
