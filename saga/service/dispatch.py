"""What a service does with one command record, Kafka aside: decode it, answer it from
the step's stored reply when the step has one, else run the handler, and say what to
send (the reply, or a dead letter). The runner (runner.py) sends it all in one
transaction per batch."""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from dataclasses import dataclass
from typing import Any

from opentelemetry.trace import SpanKind

from saga.codec.json import dumps_body
from saga.config import Settings
from saga.engine.events import CommandKind
from saga.engine.ids import idempotency_key
from saga.engine.inputs import CommandReply, ReplyOutcome
from saga.errors import BusinessError, CodecError
from saga.kafka.dead_letters import Source, dead_letter
from saga.kafka.records import DeadLetterReason, RecordCodec
from saga.service.handlers import Command, Service, StagedState
from saga.service.state import BatchState
from saga.telemetry import metrics, tracing
from saga.telemetry.logs import log_context

log = logging.getLogger("saga.services")


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
            if envelope["reply_topic"] != self.inbox:
                return [letter]
            failure = {"outcome": ReplyOutcome.BUSINESS_ERROR, "result": None,
                       "error": f"undecodable_command: {detail}"[:1000]}
            return [letter, self._reply(envelope, failure)]
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
        return out

    async def _handle_command(self, command: dict[str, Any], batch: BatchState
                              ) -> list[Outgoing]:
        command_id = command["command_id"]
        key = idempotency_key(command_id)
        held = batch.step_reply(key)
        if held is not None and (held.command_id == command_id
                                 or held.reply["outcome"] != ReplyOutcome.TECHNICAL_ERROR):
            self.duplicates += 1  # answered before: a redelivery, or a retry after a timeout
            metrics.SERVICE_COMMANDS.labels(self.service.name, command["name"],
                                            "answered").inc()
            return [self._reply(command, held.reply)]
        began = time.monotonic()
        reply, writes = await self._run_handler(command, key, batch)
        metrics.HANDLER_DURATION.labels(self.service.name, command["name"]).observe(
            time.monotonic() - began)
        metrics.SERVICE_COMMANDS.labels(self.service.name, command["name"],
                                        str(reply["outcome"]).lower()).inc()
        batch.record(command_id, key, writes, reply)
        return [self._reply(command, reply)]

    async def _run_handler(self, command: dict[str, Any], key: str, batch: BatchState
                           ) -> tuple[dict[str, Any], dict[str, Any]]:
        handler = self.service.handlers.get(command["name"])
        if handler is None:
            return {"outcome": ReplyOutcome.BUSINESS_ERROR, "result": None,
                    "error": f"unknown_command: {self.service.name} has no handler for "
                             f"{command['name']!r}"}, {}
        staged = StagedState(batch, self.service.defaults)
        self.handled += 1
        try:
            result = await asyncio.wait_for(handler(Command(
                command["command_id"], key, command["saga_id"], command["saga_type"],
                command["name"], CommandKind(command["kind"]), command["attempt"],
                command["body"], staged)), self.settings.handler_timeout_s or None)
        except BusinessError as exc:
            return {"outcome": ReplyOutcome.BUSINESS_ERROR, "result": None,
                    "error": exc.reason}, {}
        except TimeoutError:
            return {"outcome": ReplyOutcome.TECHNICAL_ERROR, "result": None,
                    "error": f"handler_timeout: {self.service.name}.{command['name']} took "
                             f"more than {self.settings.handler_timeout_s:g}s"}, {}
        except Exception as exc:  # noqa: BLE001 - any other failure is technical
            log.warning("handler %s.%s failed:\n%s", self.service.name, command["name"],
                        traceback.format_exc())
            return {"outcome": ReplyOutcome.TECHNICAL_ERROR, "result": None,
                    "error": f"{type(exc).__name__}: {exc}"}, {}
        try:
            dumps_body(result, limit=self.settings.max_payload_bytes)
            dumps_body(staged.writes)
        except CodecError as exc:  # retrying the same code cannot help
            return {"outcome": ReplyOutcome.BUSINESS_ERROR, "result": None,
                    "error": f"unencodable_result: {exc}"[:1000]}, {}
        return {"outcome": ReplyOutcome.OK, "result": result, "error": ""}, staged.writes

    def _reply(self, command: dict[str, Any], reply: dict[str, Any]) -> Outgoing:
        command_id = command["command_id"]
        value = self.codec.encode_inbox(command["saga_id"], CommandReply(
            command_id, self.service.name, ReplyOutcome(reply["outcome"]), reply["result"],
            reply["error"]), message_id=f"reply:{command_id}")
        return Outgoing(command["reply_topic"], command["saga_id"].encode(), value, [])

    def _dead_letter(self, record: Any, reason: str, detail: str) -> Outgoing:
        value, letter_headers = dead_letter(
            self.codec, Source(record.topic, record.partition, record.offset, record.key,
                               record.value), reason, detail, f"service:{self.service.name}")
        log.warning("dead-lettered %s/%s/%s: %s", record.topic, record.partition,
                    record.offset, reason)
        return Outgoing(self.dlq, record.key, value,
                    [(k, v if isinstance(v, bytes) else str(v).encode())
                     for k, v in letter_headers])
