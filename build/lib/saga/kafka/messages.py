"""Kafka records <-> engine values: the only place that knows both the wire format and
the engine's types."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from saga.codec.avro import AvroCodec
from saga.codec.json import dumps_body, loads_body
from saga.engine import events as ev
from saga.engine.inputs import (
    CancelSaga,
    CommandReply,
    DeliverSignal,
    FireTimer,
    Input,
    StartSaga,
)
from saga.errors import CodecError


@dataclass(frozen=True)
class InboxMessage:
    saga_id: str
    message_id: str
    value: Input


class Messages:
    """Encodes and decodes every record kind kafka-saga writes or reads."""

    def __init__(self, codec: AvroCodec | None = None, *,
                 max_payload_bytes: int = 512 * 1024) -> None:
        self.codec = codec or AvroCodec()
        self.limit = max_payload_bytes

    # ---- saga.inbox ----------------------------------------------------------------
    def decode_inbox(self, data: bytes | None) -> InboxMessage:
        if data is None:
            raise CodecError("an inbox record without a value (a tombstone)")
        _, record = self.codec.decode(data, expect="inbox_message")
        saga_id = record["saga_id"]
        if not saga_id or "\x00" in saga_id:
            raise CodecError(f"saga id {saga_id!r} is empty or holds a NUL byte")
        name, body = record["body"]
        value: Input
        match name:
            case "saga.Start":
                value = StartSaga(body["saga_type"], loads_body(body["input"], limit=self.limit))
            case "saga.Signal":
                value = DeliverSignal(body["name"], loads_body(body["payload"], limit=self.limit))
            case "saga.Cancel":
                value = CancelSaga(body["reason"])
            case "saga.Reply":
                value = CommandReply(body["command_id"], body["service"], body["outcome"],
                                     loads_body(body["result"], limit=self.limit),
                                     body["error"])
            case "saga.TimerFired":
                value = FireTimer(body["timer_id"], body["due_ms"])
            case _:
                raise CodecError(f"inbox body {name} is not handled by this coordinator")
        return InboxMessage(saga_id, record["message_id"], value)

    def encode_inbox(self, saga_id: str, value: Input, *, message_id: str | None = None
                     ) -> bytes:
        body: tuple[str, dict[str, Any]]
        match value:
            case StartSaga():
                body = ("saga.Start", {"saga_type": value.saga_type,
                                       "input": dumps_body(value.input, limit=self.limit)})
            case DeliverSignal():
                body = ("saga.Signal", {"name": value.name,
                                        "payload": dumps_body(value.payload,
                                                              limit=self.limit)})
            case CancelSaga():
                body = ("saga.Cancel", {"reason": value.reason})
            case CommandReply():
                body = ("saga.Reply", {"command_id": value.command_id,
                                       "service": value.service, "outcome": value.outcome,
                                       "result": dumps_body(value.result, limit=self.limit),
                                       "error": value.error})
            case FireTimer():
                body = ("saga.TimerFired", {"timer_id": value.timer_id,
                                            "due_ms": value.due_ms})
        return self.codec.encode("inbox_message", {
            "saga_id": saga_id, "message_id": message_id or uuid.uuid4().hex,
            "sent_at_ms": int(time.time() * 1000), "body": body})

    # ---- saga.journal --------------------------------------------------------------
    def encode_entry(self, entry: ev.Entry, cause: str | None = None) -> bytes:
        return self.codec.encode("journal_event", {
            "saga_id": entry.saga_id, "seq": entry.seq, "type": entry.event.type_name,
            "at_ms": entry.at_ms, "body": dumps_body(entry.event), "cause": cause})

    def decode_entry(self, data: bytes | None) -> ev.Entry:
        if data is None:
            raise CodecError("a journal record without a value")
        _, record = self.codec.decode(data, expect="journal_event")
        event = ev.from_body(record["type"], loads_body(record["body"]))
        return ev.Entry(record["saga_id"], record["seq"], record["at_ms"], event)

    # ---- <service>.commands --------------------------------------------------------
    def encode_command(self, saga_type: str, event: ev.CommandIssued, reply_topic: str,
                       at_ms: int) -> bytes:
        saga_id = event.command_id.rsplit(":", 2)[0]
        return self.codec.encode("command", {
            "command_id": event.command_id, "saga_id": saga_id, "saga_type": saga_type,
            "service": event.service, "name": event.name, "kind": event.kind,
            "attempt": event.attempt, "issued_at_ms": at_ms, "reply_topic": reply_topic,
            "body": dumps_body(event.input)})

    def decode_command(self, data: bytes | None) -> dict[str, Any]:
        if data is None:
            raise CodecError("a command record without a value")
        _, record = self.codec.decode(data, expect="command")
        record["body"] = loads_body(record["body"], limit=self.limit)
        return record

    # ---- saga.timers ---------------------------------------------------------------
    def encode_timer(self, saga_id: str, event: ev.TimerScheduled) -> bytes:
        return self.codec.encode("timer_request", {
            "timer_id": event.timer_id, "saga_id": saga_id, "action": "SCHEDULE",
            "due_ms": event.due_ms, "purpose": event.purpose})

    def decode_timer(self, data: bytes | None) -> dict[str, Any] | None:
        """The request, or None for a tombstone or a CANCEL (both end the timer)."""
        if data is None:
            return None
        _, record = self.codec.decode(data, expect="timer_request")
        return record if record["action"] == "SCHEDULE" else None

    # ---- saga.dlq ------------------------------------------------------------------
    def encode_dead_letter(self, *, topic: str, partition: int, offset: int,
                           key: bytes | None, value: bytes | None, reason: str, detail: str,
                           component: str) -> bytes:
        return self.codec.encode("dead_letter", {
            "source_topic": topic, "source_partition": partition, "source_offset": offset,
            "key": key, "value": value, "reason": reason, "detail": detail[:4000],
            "component": component, "at_ms": int(time.time() * 1000)})

    def decode_dead_letter(self, data: bytes | None) -> dict[str, Any]:
        if data is None:
            raise CodecError("a dead-letter record without a value")
        return self.codec.decode(data, expect="dead_letter")[1]


def dead_letter_headers(reason: str, detail: str, component: str, topic: str,
                        partition: int, offset: int) -> list[tuple[str, str | bytes | None]]:
    """The reason in plain headers, for any Kafka client to read without Avro."""
    return [("saga.dlq.reason", reason.encode()), ("saga.dlq.detail", detail[:1000].encode()),
            ("saga.dlq.component", component.encode()),
            ("saga.dlq.source", f"{topic}/{partition}/{offset}".encode())]
