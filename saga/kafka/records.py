"""Kafka record values <-> engine values: the only place that knows both the wire format
(Avro envelopes, JSON bodies) and the engine's types. Which topic, key, partition and
headers a record gets is the coordinator's outbox's business."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from saga.codec.avro import AvroCodec
from saga.codec.claim_check import ClaimCheck
from saga.codec.json import dumps_body, loads_body
from saga.codec.payload import SEAL_OVERHEAD, PayloadCipher, SealContext
from saga.config import Settings
from saga.engine import events as ev
from saga.engine.inputs import (
    AbandonSaga,
    CancelSaga,
    ChildFinished,
    CommandReply,
    DeliverSignal,
    FireTimer,
    Input,
    ReplyOutcome,
    ResumeSaga,
    StartSaga,
    UpdateSaga,
)
from saga.errors import CodecError
from saga.kafka.headers import TimerAction
from saga.store.blobs import DirectoryBlobStore
from saga.store.service_store import StateChange


@dataclass(frozen=True)
class InboxMessage:
    saga_id: str
    message_id: str
    value: Input


class DeadLetterReason(StrEnum):
    """Why the Kafka edge set a record aside (the engine adds its own RejectReason)."""

    UNDECODABLE = "undecodable"  # garbage, truncated, unknown schema, oversized, tombstone
    KEY_MISMATCH = "key_mismatch"  # the record key is not the saga id it carries
    DECISION_FAILED = "decision_failed"  # the saga's history refused the input
    UNENCODABLE_DECISION = "unencodable_decision"  # the saga parked: see its history
    FOREIGN_REPLY_TOPIC = "foreign_reply_topic"  # a command whose replies go elsewhere
    #: an input only one writer may send (a reply, a fired timer) without its origin tag
    UNPROVEN_ORIGIN = "unproven_origin"
    #: a saga id over engine.ids.MAX_SAGA_ID_BYTES: every record of the saga would carry it
    SAGA_ID_TOO_LONG = "saga_id_too_long"
    #: Kafka refused a record its processing wrote (too large, invalid) for good
    RECORD_REFUSED = "record_refused"


#: Longest error or detail text a record carries, in characters: a handler's exception
#: message is not bounded, and a reply or letter past Kafka's record limit is refused.
TEXT_LIMIT = 4000


class RecordCodec:
    """Encodes and decodes every record value kafka-saga writes or reads."""

    def __init__(self, codec: AvroCodec | None = None, *,
                 max_payload_bytes: int = 512 * 1024,
                 cipher: PayloadCipher | None = None,
                 claims: ClaimCheck | None = None, topic_prefix: str = "") -> None:
        self.codec = codec or AvroCodec()
        self.limit = max_payload_bytes
        self.cipher = cipher or PayloadCipher()
        self.claims = claims or ClaimCheck()
        #: Seals name the real topic a body belongs to (saga/codec/payload.py).
        self.prefix = topic_prefix
        self._inbox = f"{topic_prefix}saga.inbox"
        self._journal = f"{topic_prefix}saga.journal"
        self._schedules = f"{topic_prefix}saga.schedules"

    @classmethod
    def for_settings(cls, settings: Settings) -> RecordCodec:
        """With the settings' body limit, payload keys (SAGA_PAYLOAD_KEYS) and
        claim-check store (SAGA_CLAIM_CHECK_DIR)."""
        store = DirectoryBlobStore(settings.claim_check_dir) if settings.claim_check_dir \
            else None
        return cls(max_payload_bytes=settings.max_payload_bytes,
                   cipher=PayloadCipher.parse(settings.payload_keys.reveal(),
                                              settings.payload_key_id,
                                              accept_legacy=settings.payload_accept_legacy),
                   claims=ClaimCheck(store, settings.claim_check_bytes),
                   topic_prefix=settings.topic_prefix)

    # JSON, then sealed, then claim-checked: the store holds only sealed bodies, and a
    # body's limit is checked on its JSON, before and after the trip. ``where``: the
    # topic, owner and field the seal is bound to.
    def _dumps(self, value: Any, where: tuple[str, str, str], *, limit: int | None = None
               ) -> bytes:
        body = dumps_body(value, limit=limit)
        if self.cipher.enabled:
            body = self.cipher.seal(body, SealContext(*where))
        return self.claims.check(body)

    def _loads(self, data: bytes, where: tuple[str, str, str], *, limit: int | None = None
               ) -> Any:
        sealed = self.claims.redeem(data, limit=None if limit is None else limit + SEAL_OVERHEAD)
        if self.cipher.opens_as_is(sealed):
            return loads_body(sealed, limit=limit)
        return loads_body(self.cipher.open(sealed, SealContext(*where)), limit=limit)

    # ---- saga.inbox ----------------------------------------------------------------
    def decode_inbox(self, data: bytes | None) -> InboxMessage:
        if data is None:
            raise CodecError("an inbox record without a value (a tombstone)")
        _, record = self.codec.decode(data, expect="inbox_message")
        saga_id = record["saga_id"]
        if not saga_id or "\x00" in saga_id:
            raise CodecError(f"saga id {saga_id!r} is empty or holds a NUL byte")
        name, body = record["body"]
        inbox = self._inbox
        value: Input
        match name:
            case "saga.Start":
                value = StartSaga(body["saga_type"],
                                  self._loads(body["input"], (inbox, saga_id, "start.input"),
                                              limit=self.limit),
                                  parent=body["parent"], parent_step=body["parent_step"])
            case "saga.Signal":
                value = DeliverSignal(body["name"], self._loads(
                    body["payload"], (inbox, saga_id, f"signal.payload:{body['name']}"),
                    limit=self.limit))
            case "saga.Cancel":
                value = CancelSaga(body["reason"])
            case "saga.Reply":
                value = CommandReply(body["command_id"], body["service"],
                                     ReplyOutcome(body["outcome"]),
                                     self._loads(body["result"], (
                                         inbox, saga_id, f"reply.result:{body['command_id']}"),
                                                 limit=self.limit),
                                     body["error"])
            case "saga.TimerFired":
                value = FireTimer(body["timer_id"], body["due_ms"])
            case "saga.Resume":
                value = ResumeSaga(body["reason"])
            case "saga.Abandon":
                value = AbandonSaga(body["reason"], body["compensate"])
            case "saga.ChildEnded":
                value = ChildFinished(body["child_id"], body["status"], self._loads(
                    body["result"], (inbox, saga_id, f"child.result:{body['child_id']}"),
                    limit=self.limit), body["error"])
            case "saga.Update":
                value = UpdateSaga(body["update_id"], body["name"], self._loads(
                    body["payload"], (inbox, saga_id, f"update.payload:{body['update_id']}"),
                    limit=self.limit))
            case _:
                raise CodecError(f"inbox body {name} is not handled by this coordinator")
        return InboxMessage(saga_id, record["message_id"], value)

    def encode_inbox(self, saga_id: str, value: Input, *, message_id: str | None = None
                     ) -> bytes:
        body: tuple[str, dict[str, Any]]
        inbox = self._inbox
        match value:
            case StartSaga():
                body = ("saga.Start", {"saga_type": value.saga_type,
                                       "input": self._dumps(value.input,
                                                            (inbox, saga_id, "start.input"),
                                                            limit=self.limit),
                                       "parent": value.parent,
                                       "parent_step": value.parent_step})
            case DeliverSignal():
                body = ("saga.Signal", {"name": value.name, "payload": self._dumps(
                    value.payload, (inbox, saga_id, f"signal.payload:{value.name}"),
                    limit=self.limit)})
            case CancelSaga():
                body = ("saga.Cancel", {"reason": value.reason})
            case CommandReply():
                body = ("saga.Reply", {"command_id": value.command_id,
                                       "service": value.service, "outcome": value.outcome,
                                       "result": self._dumps(value.result, (
                                           inbox, saga_id, f"reply.result:{value.command_id}"),
                                                             limit=self.limit),
                                       "error": value.error[:TEXT_LIMIT]})
            case FireTimer():
                body = ("saga.TimerFired", {"timer_id": value.timer_id,
                                            "due_ms": value.due_ms})
            case ResumeSaga():
                body = ("saga.Resume", {"reason": value.reason})
            case AbandonSaga():
                body = ("saga.Abandon", {"reason": value.reason,
                                         "compensate": value.compensate})
            case ChildFinished():
                body = ("saga.ChildEnded", {"child_id": value.child_id,
                                            "status": value.status,
                                            "result": self._dumps(value.result, (
                                                inbox, saga_id,
                                                f"child.result:{value.child_id}")),
                                            "error": value.error[:TEXT_LIMIT]})
            case UpdateSaga():
                body = ("saga.Update", {"update_id": value.update_id, "name": value.name,
                                        "payload": self._dumps(value.payload, (
                                            inbox, saga_id,
                                            f"update.payload:{value.update_id}"),
                                                              limit=self.limit)})
        return self.codec.encode("inbox_message", {
            "saga_id": saga_id, "message_id": message_id or uuid.uuid4().hex,
            "sent_at_ms": int(time.time() * 1000), "body": body})

    # ---- saga.journal --------------------------------------------------------------
    def encode_entry(self, entry: ev.Entry, cause: str | None = None) -> bytes:
        return self.codec.encode("journal_event", {
            "saga_id": entry.saga_id, "seq": entry.seq, "type": entry.event.type_name,
            "at_ms": entry.at_ms,
            "body": self._dumps(entry.event, (self._journal, entry.saga_id, f"entry:{entry.seq}")),
            "cause": cause})

    def decode_entry(self, data: bytes | None) -> ev.Entry:
        return self.decode_journal(data)[0]

    def decode_journal(self, data: bytes | None) -> tuple[ev.Entry, str | None]:
        """The entry and its cause: ``<inbox topic>/<partition>/<offset>`` of the input
        whose decision wrote it (how a client tells that its own start created a saga)."""
        if data is None:
            raise CodecError("a journal record without a value")
        _, record = self.codec.decode(data, expect="journal_event")
        event = ev.from_body(record["type"], self._loads(
            record["body"], (self._journal, record["saga_id"], f"entry:{record['seq']}")))
        entry = ev.Entry(record["saga_id"], record["seq"], record["at_ms"], event)
        return entry, record.get("cause")

    # ---- <service>.commands --------------------------------------------------------
    def encode_command(self, saga_id: str, saga_type: str, event: ev.CommandIssued,
                       reply_topic: str, at_ms: int) -> bytes:
        return self.codec.encode("command", {
            "command_id": event.command_id, "saga_id": saga_id, "saga_type": saga_type,
            "service": event.service, "name": event.name, "kind": event.kind,
            "attempt": event.attempt, "issued_at_ms": at_ms, "reply_topic": reply_topic,
            "body": self._dumps(event.input, (f"{self.prefix}{event.service}.commands", saga_id,
                                              f"command.body:{event.command_id}"))})

    def decode_command(self, data: bytes | None) -> dict[str, Any]:
        record = self.command_envelope(data)
        record["body"] = self._loads(record["body"], (
            f"{self.prefix}{record['service']}.commands", record["saga_id"],
            f"command.body:{record['command_id']}"), limit=self.limit)
        return record

    def command_envelope(self, data: bytes | None) -> dict[str, Any]:
        """A command with its body left as raw bytes: who to answer, even when the body
        itself cannot be read."""
        if data is None:
            raise CodecError("a command record without a value")
        return self.codec.decode(data, expect="command")[1]

    # ---- saga.timers ---------------------------------------------------------------
    def encode_timer(self, saga_id: str, event: ev.TimerScheduled) -> bytes:
        return self.codec.encode("timer_request", {
            "timer_id": event.timer_id, "saga_id": saga_id, "action": TimerAction.SCHEDULE,
            "due_ms": event.due_ms, "purpose": event.purpose})

    def decode_timer(self, data: bytes | None) -> dict[str, Any] | None:
        """The request, or None for a tombstone or a CANCEL (both end the timer)."""
        if data is None:
            return None
        _, record = self.codec.decode(data, expect="timer_request")
        return record if record["action"] == TimerAction.SCHEDULE else None

    # ---- <service>.state -----------------------------------------------------------
    def encode_state_change(self, change: StateChange, topic: str = "") -> bytes:
        """``topic``: the service's state topic, which the seal names."""
        return self.codec.encode("state_change", {
            "key": change.key, "version": change.version,
            "value": self._dumps(change.value, (topic, change.key, "state.value")),
            "command_id": change.command_id})

    def decode_state_change(self, data: bytes | None, topic: str = "") -> StateChange:
        if data is None:
            raise CodecError("a state change without a value")
        record = self.codec.decode(data, expect="state_change")[1]
        raw = record["value"]
        return StateChange(record["key"], record["version"],
                           None if raw is None else self._loads(
                               raw, (topic, record["key"], "state.value")),
                           record["command_id"])

    # ---- saga.schedules ------------------------------------------------------------
    def encode_schedule(self, schedule_id: str, saga_id: str, entry: Any, at_ms: int
                        ) -> bytes:
        return self.codec.encode("schedule_entry", {
            "schedule_id": schedule_id, "saga_id": saga_id,
            "entry": self._dumps(entry, (self._schedules, schedule_id, "schedule.entry")),
            "at_ms": at_ms})

    def decode_schedule(self, data: bytes) -> dict[str, Any]:
        record = self.codec.decode(data, expect="schedule_entry")[1]
        return {**self._loads(record["entry"], (self._schedules, record["schedule_id"],
                                                "schedule.entry")),
                "saga_id": record["saga_id"],
                "updated_at_ms": record["at_ms"]}

    # ---- saga.dlq ------------------------------------------------------------------
    def encode_dead_letter(self, *, topic: str, partition: int, offset: int,
                           key: bytes | None, value: bytes | None, reason: str, detail: str,
                           component: str, cut: list[dict[str, Any]] | None = None) -> bytes:
        """``cut``: the original fields the letter does not hold whole (``field``,
        ``size``, ``sha256``); saga/kafka/dead_letters.py decides what is cut."""
        return self.codec.encode("dead_letter", {
            "source_topic": topic, "source_partition": partition, "source_offset": offset,
            "key": key, "value": value, "reason": reason, "detail": detail[:TEXT_LIMIT],
            "component": component, "at_ms": int(time.time() * 1000), "cut": cut or []})

    def decode_dead_letter(self, data: bytes | None) -> dict[str, Any]:
        if data is None:
            raise CodecError("a dead-letter record without a value")
        return self.codec.decode(data, expect="dead_letter")[1]

