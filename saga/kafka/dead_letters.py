"""Dead letters: the one place that builds a saga.dlq record (value and headers, for
the coordinator and the services alike), reads one back, and redrives it (for the CLI
and the HTTP API alike)."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from saga.config import Settings
from saga.engine.ids import MAX_SAGA_ID_BYTES
from saga.errors import CodecError, KafkaUnavailable
from saga.kafka import clients, headers
from saga.kafka.headers import Headers
from saga.kafka.records import RecordCodec

#: Largest original value a dead letter carries (the producer's record limit is 1 MB).
VALUE_LIMIT = 512 * 1024
#: Longest original key a letter holds whole: every key a kafka-saga writer makes (a
#: saga id) fits. The letter is keyed by the original key too, so an outside writer's
#: 520 KB key, kept whole, made a letter over Kafka's record limit.
KEY_LIMIT = MAX_SAGA_ID_BYTES
#: What a letter keeps of a key over KEY_LIMIT, to recognise it by.
KEY_PREVIEW = 256


class CutField(StrEnum):
    """An original field a letter does not hold whole (schema dead_letter v2, ``cut``)."""

    KEY = "key"  # its first KEY_PREVIEW bytes are kept
    VALUE = "value"  # nothing is kept: it stays at the source offset


class RedriveRefusal(StrEnum):
    """Why `saga dlq redrive` (and the API's) did not send a letter back."""

    #: not a letter kafka-saga wrote, or damaged: where it came from is unknown
    UNREADABLE = "unreadable"
    #: names no component that dead-letters records (coordinator, service:NAME)
    UNKNOWN_COMPONENT = "unknown_component"
    #: names a topic its component never reads: a forged or damaged letter
    FOREIGN_TOPIC = "foreign_topic"
    #: the letter does not hold the whole original record (a key or value over its
    #: limit, or no value at all): sending what it holds would not be the record
    NOT_KEPT = "not_kept"


@dataclass(frozen=True)
class Source:
    """Where the record that could not be processed was read."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True)
class Letter:
    """A dead letter as produced to saga.dlq: keyed by the original key (cut like the
    letter's own copy of it), never over clients.RECORD_LIMIT whatever the original was."""

    key: bytes | None
    value: bytes
    headers: Headers


def dead_letter(codec: RecordCodec, source: Source, reason: str, detail: str,
                component: str) -> Letter:
    """The dead letter for ``source``. Every field copied from the original is bounded:
    a key over KEY_LIMIT keeps its first bytes, a value over VALUE_LIMIT is left at the
    source offset (retention permitting), each with its size and SHA-256 in ``cut``;
    the detail is cut at records.TEXT_LIMIT characters."""
    key, value = source.key, source.value
    cut: list[dict[str, Any]] = []
    notes: list[str] = []
    if key is not None and len(key) > KEY_LIMIT:
        cut.append(_cut(CutField.KEY, key))
        notes.append(f"the {len(key)}-byte key is cut to its first {KEY_PREVIEW} bytes "
                     f"(sha256 {cut[-1]['sha256'].hex()})")
        key = key[:KEY_PREVIEW]
    if value is not None and len(value) > VALUE_LIMIT:
        cut.append(_cut(CutField.VALUE, value))
        notes.append(f"the {len(value)}-byte value is not kept: over {VALUE_LIMIT} bytes "
                     f"(sha256 {cut[-1]['sha256'].hex()})")
        value = None
    if notes:  # first: a header keeps only the detail's start
        detail = f"[{'; '.join(notes)}; the whole record is at the source offset] {detail}"
    letter = codec.encode_dead_letter(
        topic=source.topic, partition=source.partition, offset=source.offset,
        key=key, value=value, reason=reason, detail=detail, component=component, cut=cut)
    return Letter(key, letter, headers.dead_letter(reason, detail, component, source.topic,
                                                   source.partition, source.offset))


def _cut(name: CutField, data: bytes) -> dict[str, Any]:
    return {"field": name.value, "size": len(data), "sha256": hashlib.sha256(data).digest()}


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
                       "at_ms": None, "original_key": None, "value": None, "cut": []})
        return letter
    letter.update({"reason": decoded["reason"], "detail": decoded["detail"],
                   "component": decoded["component"],
                   "source": f"{decoded['source_topic']}/{decoded['source_partition']}/"
                             f"{decoded['source_offset']}",
                   "source_topic": decoded["source_topic"], "at_ms": decoded["at_ms"],
                   "original_key": decoded["key"], "value": decoded["value"],
                   "cut": [{**c, "sha256": c["sha256"].hex()} for c in decoded["cut"]]})
    return letter


def public(letter: Mapping[str, Any]) -> dict[str, Any]:
    """What a person (or `--json`) sees of a letter: sizes and a preview, not the bytes."""
    out = {k: v for k, v in letter.items() if k not in ("value", "original_key")}
    value = letter.get("value")
    out["value_bytes"] = None if value is None else len(value)
    out["value_preview"] = None if value is None else value[:120].decode(errors="replace")
    return out


#: What ``to_json`` adds to ``public``: the original value and key, in base64.
_BYTES_B64 = ("value_b64", "key_b64")


def to_json(letter: Mapping[str, Any]) -> dict[str, Any]:
    """A letter as JSON can hold it (the bytes in base64), for the visibility index."""
    return {**public(letter), "source_topic": letter.get("source_topic"),
            "value_b64": _b64(letter.get("value")), "key_b64": _b64(letter.get("original_key"))}


def shown(stored: Mapping[str, Any]) -> dict[str, Any]:
    """``public`` of the letter ``to_json`` stored. That is ``public`` plus the bytes in
    base64: dropped, not decoded (up to VALUE_LIMIT) for a size and preview it holds."""
    return {k: v for k, v in stored.items() if k not in _BYTES_B64}


def from_json(stored: Mapping[str, Any]) -> dict[str, Any]:
    """The letter ``to_json`` stored, with its bytes back (what a redrive needs)."""
    letter = {k: v for k, v in stored.items() if k not in _BYTES_B64}
    letter["value"] = _unb64(stored.get("value_b64"))
    letter["original_key"] = _unb64(stored.get("key_b64"))
    return letter


@dataclass(frozen=True)
class Refused:
    id: str
    reason: RedriveRefusal
    detail: str

    def to_json(self) -> dict[str, str]:
        return {"id": self.id, "reason": self.reason.value, "detail": self.detail}


@dataclass(frozen=True)
class Redriven:
    """The ids of the letters sent back, and those refused with why."""

    sent: list[str] = field(default_factory=list)
    refused: list[Refused] = field(default_factory=list)


def redrive_target(settings: Settings, component: str) -> str | None:
    """The one topic a letter of ``component`` may be sent back to: the topic that
    component reads (the coordinator saga.inbox, service NAME its NAME.commands); None
    for a component that dead-letters nothing."""
    if component == "coordinator":
        return settings.topic("saga.inbox")
    service = component.removeprefix("service:")
    if service != component and service:
        return settings.topic(f"{service}.commands")
    return None


def refusal(settings: Settings, letter: Mapping[str, Any]) -> Refused | None:
    """Why ``letter`` must not be redriven, or None. A letter's source topic is the
    letter's own claim, and every service may write saga.dlq: sent wherever it says, a
    letter forged by one principal would be written to saga.journal (or another
    service's commands) by whoever redrives it."""
    letter_id = str(letter["id"])
    source, component = letter.get("source_topic"), str(letter.get("component"))[:200]
    if source is None:
        return Refused(letter_id, RedriveRefusal.UNREADABLE,
                       "not a dead letter kafka-saga wrote: its source is unknown")
    target = redrive_target(settings, component)
    if target is None:
        return Refused(letter_id, RedriveRefusal.UNKNOWN_COMPONENT,
                       f"component {component!r} dead-letters nothing; only the "
                       "coordinator's and services' letters are redriven")
    if source != target:
        return Refused(letter_id, RedriveRefusal.FOREIGN_TOPIC,
                       f"names {str(source)[:300]!r} as its source, a topic {component!r} "
                       f"never reads (only {target!r}): forged or damaged")
    cut = [c["field"] for c in letter.get("cut") or []]
    if cut or letter.get("value") is None:
        what = " and ".join(cut) or "value (none: a tombstone, or not kept)"
        return Refused(letter_id, RedriveRefusal.NOT_KEPT,
                       f"the letter does not hold the original's whole {what}; the record "
                       f"is at {letter.get('source')} while retention keeps it")
    return None


def redrive(settings: Settings, letters: Iterable[Mapping[str, Any]]) -> Redriven:
    """Produce each letter's original record back to the topic its component reads,
    marked with the header ``saga.dlq.redriven_from``; a letter that names any other
    topic, or does not hold its whole original, is refused (``refusal``)."""
    done = Redriven()
    producer = None
    for letter in letters:
        refused = refusal(settings, letter)
        if refused is not None:
            done.refused.append(refused)
            continue
        producer = producer or clients.producer(settings.kafka)
        producer.produce(letter["source_topic"], letter["value"], letter["original_key"],
                         headers=[(headers.REDRIVEN_FROM, str(letter["id"]).encode())])
        done.sent.append(str(letter["id"]))
    if producer is not None and producer.flush(30):
        raise KafkaUnavailable("not every redriven record was delivered",
                               hint="retry: a redriven record that arrives twice is "
                               "deduplicated like any other input")
    return done


def _text(data: bytes | None) -> str | None:
    return None if data is None else data.decode(errors="replace")


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode()


def _unb64(text: str | None) -> bytes | None:
    return None if text is None else base64.b64decode(text)
