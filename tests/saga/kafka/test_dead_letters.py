"""Dead letters stay small whatever the record they set aside, and a redrive sends a
letter back only to the topic its component reads: a letter is bytes anyone who may
write saga.dlq (every service) can forge."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
import pytest

from saga.config import Settings
from saga.kafka import clients
from saga.kafka.clients import RECORD_LIMIT, record_bytes
from saga.kafka.dead_letters import (
    KEY_PREVIEW,
    RedriveRefusal,
    Source,
    dead_letter,
    from_json,
    public,
    read_letter,
    redrive,
    refusal,
    shown,
    to_json,
)
from saga.kafka.records import RecordCodec

CODEC = RecordCodec()
SETTINGS = Settings(topic_prefix="t.", bootstrap_servers="127.0.0.1:1")


def _letter(source: Source, detail: str = "why", component: str = "coordinator"
            ) -> dict[str, Any]:
    made = dead_letter(CODEC, source, "undecodable", detail, component)
    record_headers = [(k, v.encode() if isinstance(v, str) else v) for k, v in made.headers]
    return read_letter(CODEC, clients.Record(0, 5, made.key, made.value, record_headers))


def test_a_huge_key_and_value_are_cut_with_their_size_and_digest() -> None:
    key, value = b"k" * 532_480, b"v" * 600_000
    made = dead_letter(CODEC, Source("t.saga.inbox", 2, 9, key, value), "key_mismatch",
                       "d" * 100_000, "coordinator")
    # Whole, the key twice and the value made a letter Kafka refuses (1.6 MB).
    assert record_bytes(made.key, made.value, made.headers) < 20_000 < RECORD_LIMIT
    assert made.key == key[:KEY_PREVIEW]
    letter = CODEC.decode_dead_letter(made.value)
    assert letter["key"] == key[:KEY_PREVIEW]
    assert letter["value"] is None
    assert letter["cut"] == [
        {"field": "key", "size": len(key), "sha256": hashlib.sha256(key).digest()},
        {"field": "value", "size": len(value), "sha256": hashlib.sha256(value).digest()}]
    assert "the 532480-byte key is cut" in letter["detail"]
    assert "the 600000-byte value is not kept" in letter["detail"]
    shown = dict(made.headers)["saga.dlq.detail"]
    assert isinstance(shown, bytes)
    assert len(shown) <= 1000
    assert shown.startswith(b"[the 532480-byte key is cut")


def test_what_fits_is_kept_whole() -> None:
    made = dead_letter(CODEC, Source("t.saga.inbox", 0, 1, b"o-1", b"garbage"), "undecodable",
                       "NotFramed", "coordinator")
    letter = CODEC.decode_dead_letter(made.value)
    assert (made.key, letter["key"], letter["value"], letter["cut"]) == (
        b"o-1", b"o-1", b"garbage", [])


def test_a_letter_with_cuts_survives_the_visibility_index_and_is_not_redriven() -> None:
    letter = _letter(Source("t.saga.inbox", 0, 1, b"k" * 5000, b"value"))
    assert letter["cut"][0]["sha256"] == hashlib.sha256(b"k" * 5000).hexdigest()
    stored = from_json(orjson.loads(orjson.dumps(to_json(letter))))
    refused = refusal(SETTINGS, stored)
    assert refused is not None
    assert refused.reason is RedriveRefusal.NOT_KEPT


@pytest.mark.parametrize("letter", [
    _letter(Source("t.saga.inbox", 0, 1, b"o-1", "\u00e9".encode() * 100)),
    _letter(Source("t.saga.inbox", 0, 1, b"k" * 5000, b"\xff" * 500_000)),
    _letter(Source("t.saga.inbox", 0, 1, None, None)),
    read_letter(CODEC, clients.Record(0, 3, b"k", b"not a letter", None)),
], ids=["kept", "cut", "tombstone", "unreadable"])
def test_a_stored_letter_is_shown_as_the_letter_itself_is(letter: dict[str, Any]) -> None:
    # the index shows a stored letter without decoding its bytes: the same row, byte
    # for byte, as the letter read from saga.dlq
    stored = orjson.loads(orjson.dumps(to_json(letter)))
    assert orjson.dumps(shown(stored)) == orjson.dumps(public(letter)) \
        == orjson.dumps(public(from_json(stored)))


@pytest.mark.parametrize(("source_topic", "component", "reason"), [
    ("t.saga.inbox", "coordinator", None),
    ("t.payments.commands", "service:payments", None),
    ("t.saga.journal", "coordinator", RedriveRefusal.FOREIGN_TOPIC),
    ("t.saga.journal", "service:payments", RedriveRefusal.FOREIGN_TOPIC),
    ("t.inventory.commands", "service:payments", RedriveRefusal.FOREIGN_TOPIC),
    ("saga.inbox", "coordinator", RedriveRefusal.FOREIGN_TOPIC),  # another installation's
    ("t.saga.inbox", "server", RedriveRefusal.UNKNOWN_COMPONENT),
    ("t.saga.inbox", "service:", RedriveRefusal.UNKNOWN_COMPONENT),
])
def test_a_letter_goes_back_only_to_the_topic_its_component_reads(
        source_topic: str, component: str, reason: RedriveRefusal | None) -> None:
    letter = _letter(Source(source_topic, 0, 1, b"o-1", b"value"), component=component)
    refused = refusal(SETTINGS, letter)
    assert (refused.reason if refused else None) == reason
    if refused is not None:
        assert refused.id == "0:5"
        assert refused.detail


def test_unreadable_and_valueless_letters_are_refused() -> None:
    unreadable = read_letter(CODEC, clients.Record(0, 3, b"k", b"not a letter", None))
    tombstone = _letter(Source("t.saga.inbox", 0, 1, b"o-1", None))
    assert [r.reason if r else None for r in (refusal(SETTINGS, unreadable),
                                              refusal(SETTINGS, tombstone))] == [
        RedriveRefusal.UNREADABLE, RedriveRefusal.NOT_KEPT]


def test_a_redrive_of_refused_letters_only_never_reaches_kafka() -> None:
    forged = _letter(Source("t.saga.journal", 0, 1, b"o-1", b"value"))
    done = redrive(SETTINGS, [forged])  # 127.0.0.1:1: a producer would time out
    assert done.sent == []
    assert [r.to_json()["reason"] for r in done.refused] == ["foreign_topic"]
