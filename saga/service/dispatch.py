"""What a service does with one command record, Kafka aside: decode it, answer it from
the step's stored reply when the step has one, else run the handler (answer.py, which
saga.testing shares), and say what to send (the reply, or a dead letter). The runner
(runner.py) sends it all in one transaction per batch."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from opentelemetry.trace import SpanKind

from saga.config import Settings
from saga.engine.ids import MAX_SAGA_ID_BYTES, saga_id_too_long
from saga.engine.inputs import ReplyOutcome
from saga.errors import CodecError
from saga.kafka import headers
from saga.kafka.clients import RECORD_LIMIT, record_bytes
from saga.kafka.dead_letters import Source, dead_letter
from saga.kafka.records import DeadLetterReason, RecordCodec
from saga.service.answer import AnswerSource, answer_command, body_limit, reply_value
from saga.service.handlers import Service
from saga.service.state import BatchState
from saga.telemetry import metrics, tracing
from saga.telemetry.logs import log_context

log = logging.getLogger("saga.services")
#: A command id is its saga id, a step and an attempt.
_COMMAND_ID_ROOM = 40


@dataclass(frozen=True)
class Outgoing:
    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]


class Dispatcher:
    def __init__(self, service: Service, settings: Settings, codec: RecordCodec) -> None:
        self.service = service
        self.settings = settings
        self.codec = codec
        self.dlq = settings.topic("saga.dlq")
        #: The only topic replies go to: a record that names another was not sent by
        #: this installation's coordinator (or was damaged), and a reply to a topic
        #: that does not exist would wedge the service's producer.
        self.inbox = settings.topic("saga.inbox")
        #: Tags each reply as this service's (saga/codec/origin.py).
        self.origin = settings.origin_keys()
        self.body_limit = body_limit(settings)
        self.handled = 0  # handler runs
        self.duplicates = 0  # commands answered from a stored reply

    async def handle(self, record: Any, batch: BatchState) -> list[Outgoing]:
        """``record``: a consumed command (topic, partition, offset, key, value)."""
        try:
            command = self.codec.decode_command(record.value)
        except CodecError as exc:
            detail = f"{type(exc).__name__}: {exc}"
            letter = self._dead_letter(record, DeadLetterReason.UNDECODABLE, detail)
            try:  # who sent it, if that much is readable: the saga must not wait forever
                envelope = self.codec.command_envelope(record.value)
            except CodecError:
                return [letter]
            if envelope["reply_topic"] != self.inbox or _oversized_ids(envelope):
                return [letter]
            failure = {"outcome": ReplyOutcome.BUSINESS_ERROR, "result": None,
                       "error": f"undecodable_command: {detail}"[:1000]}
            return [letter, self._reply(envelope, failure)]
        oversized = _oversized_ids(command)
        if oversized:  # a reply keyed and named by it would be refused: never run
            return [self._dead_letter(record, DeadLetterReason.SAGA_ID_TOO_LONG, oversized)]
        if command["reply_topic"] != self.inbox:
            return [self._dead_letter(
                record, DeadLetterReason.FOREIGN_REPLY_TOPIC,
                f"the command asks for replies on {command['reply_topic']!r}, not this "
                f"installation's {self.inbox!r}: not run")]
        with tracing.span(f"saga.handle {self.service.name}.{command['name']}",
                          parent=tracing.header(record.headers) or None,
                          kind=SpanKind.CONSUMER,
                          attributes={"saga.id": command["saga_id"],
                                      "saga.command_id": command["command_id"]}
                          ) as traceparent, log_context(saga_id=command["saga_id"],
                                                        command_id=command["command_id"]):
            out = await self._handle_command(command, batch)
        if traceparent is not None:  # the reply goes back under the handler's span
            out = [Outgoing(o.topic, o.key, o.value,
                            [*o.headers, (tracing.TRACEPARENT, traceparent.encode())])
                   for o in out]
        return [self._fitting(record, o) for o in out]

    async def _handle_command(self, command: dict[str, Any], batch: BatchState
                              ) -> list[Outgoing]:
        began = time.monotonic()
        answer = await answer_command(self.service, command, batch,
                                      handler_timeout_s=self.settings.handler_timeout_s,
                                      max_payload_bytes=self.body_limit)
        if answer.source is AnswerSource.STORED:
            self.duplicates += 1  # answered before: a redelivery, or a retry after a timeout
            metrics.SERVICE_COMMANDS.labels(self.service.name, command["name"],
                                            "answered").inc()
            return [self._reply(command, answer.reply)]
        if answer.source is AnswerSource.HANDLER:
            self.handled += 1
        metrics.HANDLER_DURATION.labels(self.service.name, command["name"]).observe(
            time.monotonic() - began)
        metrics.SERVICE_COMMANDS.labels(self.service.name, command["name"],
                                        str(answer.reply["outcome"]).lower()).inc()
        return [self._reply(command, answer.reply)]

    def _reply(self, command: dict[str, Any], reply: dict[str, Any]) -> Outgoing:
        value = reply_value(self.codec, self.service.name, command, reply)
        mac = self.origin.tag_reply(self.service.name, command["reply_topic"], value)
        return Outgoing(command["reply_topic"], command["saga_id"].encode(), value,
                        [] if mac is None else [(headers.ORIGIN_MAC, mac)])

    def _fitting(self, record: Any, out: Outgoing) -> Outgoing:
        """``out``, or the command's dead letter when Kafka would refuse ``out``: sent,
        it would fail the batch's transaction on every try, and each try would run the
        batch's handlers again. The letter itself is bounded (dead_letters.py)."""
        size = record_bytes(out.key, out.value, out.headers)
        if size <= RECORD_LIMIT:
            return out
        return self._dead_letter(record, DeadLetterReason.RECORD_REFUSED,
                                 f"its {size}-byte record for {out.topic} is over Kafka's "
                                 f"record limit ({RECORD_LIMIT} bytes): not sent")

    def _dead_letter(self, record: Any, reason: str, detail: str) -> Outgoing:
        letter = dead_letter(
            self.codec, Source(record.topic, record.partition, record.offset, record.key,
                               record.value), reason, detail, f"service:{self.service.name}")
        log.warning("dead-lettered %s/%s/%s: %s", record.topic, record.partition,
                    record.offset, reason)
        return Outgoing(self.dlq, letter.key, letter.value,
                    [(k, v if isinstance(v, bytes) else str(v).encode())
                     for k, v in letter.headers])


def _oversized_ids(command: dict[str, Any]) -> str | None:
    """Why a command's saga or command id is longer than any kafka-saga makes, or None."""
    saga_id, command_id = str(command["saga_id"]), str(command["command_id"])
    if saga_id_too_long(saga_id):
        return f"a saga id of {len(saga_id)} characters, over the {MAX_SAGA_ID_BYTES}-byte limit"
    if len(command_id) > MAX_SAGA_ID_BYTES + _COMMAND_ID_ROOM:
        return f"a command id of {len(command_id)} characters: no saga makes one that long"
    return None
