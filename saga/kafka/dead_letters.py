"""Dead letters: the one place that builds a saga.dlq record (value and headers, for
the coordinator and the services alike), reads one back, and redrives it (for the CLI
and the HTTP API alike)."""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from saga.config import KafkaConnection
from saga.errors import CodecError, KafkaUnavailable
from saga.kafka import clients, headers
from saga.kafka.headers import Headers
from saga.kafka.records import RecordCodec

#: Largest original value a dead letter carries (the producer's record limit is 1 MB).
VALUE_LIMIT = 512 * 1024


@dataclass(frozen=True)
class Source:
    """Where the record that could not be processed was read."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def dead_letter(codec: RecordCodec, source: Source, reason: str, detail: str,
                component: str) -> tuple[bytes, Headers]:
    """The value and headers of the dead letter for ``source``."""
    value = source.value
    if value is not None and len(value) > VALUE_LIMIT:
        # Kept whole it would exceed the producer's record limit and fail the batch;
        # the original stays on its topic (retention permitting) at the source offset.
        detail = (f"{detail} [the {len(value)}-byte value is not kept: over "
                  f"{VALUE_LIMIT} bytes; it is at the source offset]")
        value = None
    letter = codec.encode_dead_letter(
        topic=source.topic, partition=source.partition, offset=source.offset,
        key=source.key, value=value, reason=reason, detail=detail, component=component)
    return letter, headers.dead_letter(reason, detail, component, source.topic,
                                       source.partition, source.offset)


def read_letter(codec: RecordCodec, record: clients.Record) -> dict[str, Any]:
    """A record of saga.dlq as `saga dlq` and the HTTP API show it; ``value`` and
    ``original_key`` keep the original bytes, for a redrive. A record kafka-saga did not
    write is shown from its headers."""
    found = headers.as_text(record.headers)
    letter: dict[str, Any] = {"id": f"{record.partition}:{record.offset}",
                              "partition": record.partition, "offset": record.offset,
                              "key": _text(record.key)}
    try:
        decoded = codec.decode_dead_letter(record.value)
    except CodecError as exc:
        letter.update({"reason": found.get(headers.DLQ_REASON, "unreadable"),
                       "detail": found.get(headers.DLQ_DETAIL, str(exc)),
                       "component": found.get(headers.DLQ_COMPONENT, "?"),
                       "source": found.get(headers.DLQ_SOURCE, "?"), "source_topic": None,
                       "at_ms": None, "original_key": None, "value": None})
        return letter
    letter.update({"reason": decoded["reason"], "detail": decoded["detail"],
                   "component": decoded["component"],
                   "source": f"{decoded['source_topic']}/{decoded['source_partition']}/"
                             f"{decoded['source_offset']}",
                   "source_topic": decoded["source_topic"], "at_ms": decoded["at_ms"],
                   "original_key": decoded["key"], "value": decoded["value"]})
    return letter


def public(letter: Mapping[str, Any]) -> dict[str, Any]:
    """What a person (or `--json`) sees of a letter: sizes and a preview, not the bytes."""
    out = {k: v for k, v in letter.items() if k not in ("value", "original_key")}
    value = letter.get("value")
    out["value_bytes"] = None if value is None else len(value)
    out["value_preview"] = None if value is None else value[:120].decode(errors="replace")
    return out


def to_json(letter: Mapping[str, Any]) -> dict[str, Any]:
    """A letter as JSON can hold it (the bytes in base64), for the visibility index."""
    return {**public(letter), "source_topic": letter.get("source_topic"),
            "value_b64": _b64(letter.get("value")), "key_b64": _b64(letter.get("original_key"))}


def from_json(stored: Mapping[str, Any]) -> dict[str, Any]:
    """The letter ``to_json`` stored, with its bytes back (what a redrive needs)."""
    letter = {k: v for k, v in stored.items() if k not in ("value_b64", "key_b64")}
    letter["value"] = _unb64(stored.get("value_b64"))
    letter["original_key"] = _unb64(stored.get("key_b64"))
    return letter


def redrive(kafka: KafkaConnection, letters: Iterable[Mapping[str, Any]]) -> list[str]:
    """Produce each letter's original record back to its source topic, marked with the
    header ``saga.dlq.redriven_from``; the ids of those sent (a letter whose source is
    unknown is not)."""
    producer = clients.producer(kafka)
    sent = []
    for letter in letters:
        if letter.get("source_topic") is None:
            continue
        producer.produce(letter["source_topic"], letter["value"], letter["original_key"],
                         headers=[(headers.REDRIVEN_FROM, str(letter["id"]).encode())])
        sent.append(str(letter["id"]))
    if producer.flush(30):
        raise KafkaUnavailable("not every redriven record was delivered",
                               hint="retry: a redriven record that arrives twice is "
                               "deduplicated like any other input")
    return sent


def _text(data: bytes | None) -> str | None:
    return None if data is None else data.decode(errors="replace")


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode()


def _unb64(text: str | None) -> bytes | None:
    return None if text is None else base64.b64decode(text)
