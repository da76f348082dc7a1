"""One command's answer, Kafka aside: the step's stored reply when it has one, else the
handler's, with what the handler wrote staged beside it. The service runner
(dispatch.py, over a batch of its RocksDB store) and saga.testing (over a batch of an
in-memory store) both answer through here, so a test sees what a deployed service does.

A step's reply is stored under its idempotency key, the same for every attempt: a
redelivered command, or a new attempt of a step that already has an OK or business
answer (a retry after a timeout), gets that answer without the handler running again.
Only after a technical failure does a new attempt run it.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from saga.codec.json import dumps_body
from saga.config import Settings
from saga.engine.events import CommandKind
from saga.engine.ids import idempotency_key
from saga.engine.inputs import CommandReply, ReplyOutcome
from saga.errors import BusinessError, CodecError
from saga.kafka.clients import RECORD_LIMIT
from saga.kafka.records import TEXT_LIMIT, RecordCodec
from saga.service.handlers import Command, Service, StagedState
from saga.service.state import BatchState

log = logging.getLogger("saga.services")


class AnswerSource(StrEnum):
    STORED = "stored"  # the step's stored reply: a redelivery, or a retry after a timeout
    HANDLER = "handler"  # the handler ran
    NO_HANDLER = "no_handler"  # the service has no handler for the command


@dataclass(frozen=True)
class Answer:
    #: ``{"outcome": ReplyOutcome, "result": ..., "error": str}``, as the reply carries it
    reply: dict[str, Any]
    source: AnswerSource


#: What a reply record holds besides its result: ids, service name, error text, headers.
_ENVELOPE_ROOM = 32 * 1024


def body_limit(settings: Settings) -> int:
    """Largest result or state value a handler may give: SAGA_MAX_PAYLOAD_BYTES, and
    without a claim-check store also room under Kafka's record limit (its reply or state
    record would be refused, and the handler run again and again)."""
    if settings.claim_check_dir:
        return settings.max_payload_bytes
    return min(settings.max_payload_bytes, RECORD_LIMIT - _ENVELOPE_ROOM)


def reply_value(codec: RecordCodec, service: str, command: Mapping[str, Any],
                reply: Mapping[str, Any]) -> bytes:
    """The inbox record that answers ``command`` with ``reply``."""
    command_id = command["command_id"]
    return codec.encode_inbox(command["saga_id"], CommandReply(
        command_id, service, ReplyOutcome(reply["outcome"]), reply["result"],
        reply["error"]), message_id=f"reply:{command_id}")


async def answer_command(service: Service, command: Mapping[str, Any], batch: BatchState, *,
                         handler_timeout_s: float, max_payload_bytes: int) -> Answer:
    """The answer to ``command`` (decoded: command_id, saga_id, saga_type, name, kind,
    attempt, body); a handler's writes and its reply are staged in ``batch``, which
    keeps them only if it commits."""
    command_id = command["command_id"]
    key = idempotency_key(command_id)
    held = batch.step_reply(key)
    if held is not None and (held.command_id == command_id
                             or held.reply["outcome"] != ReplyOutcome.TECHNICAL_ERROR):
        return Answer(held.reply, AnswerSource.STORED)
    handler = service.handlers.get(command["name"])
    if handler is None:
        reply: dict[str, Any] = {
            "outcome": ReplyOutcome.BUSINESS_ERROR, "result": None,
            "error": f"unknown_command: {service.name} has no handler for "
                     f"{command['name'][:200]!r}"}
        batch.record(command_id, key, {}, reply)
        return Answer(reply, AnswerSource.NO_HANDLER)
    reply, writes = await _run(service, command, key, batch, handler_timeout_s,
                               max_payload_bytes)
    # An exception's message has no bound: a 2 MB one made a reply Kafka refused, and
    # the service ran the handler again for ever.
    reply["error"] = reply["error"][:TEXT_LIMIT]
    batch.record(command_id, key, writes, reply)
    return Answer(reply, AnswerSource.HANDLER)


async def _run(service: Service, command: Mapping[str, Any], key: str, batch: BatchState,
               handler_timeout_s: float, max_payload_bytes: int
               ) -> tuple[dict[str, Any], dict[str, Any]]:
    handler = service.handlers[command["name"]]
    staged = StagedState(batch, service.defaults)
    try:
        result = await asyncio.wait_for(handler(Command(
            command["command_id"], key, command["saga_id"], command["saga_type"],
            command["name"], CommandKind(command["kind"]), command["attempt"],
            command["body"], staged)), handler_timeout_s or None)
    except BusinessError as exc:
        return {"outcome": ReplyOutcome.BUSINESS_ERROR, "result": None,
                "error": exc.reason}, {}
    except TimeoutError:
        return {"outcome": ReplyOutcome.TECHNICAL_ERROR, "result": None,
                "error": f"handler_timeout: {service.name}.{command['name']} took "
                         f"more than {handler_timeout_s:g}s"}, {}
    except Exception as exc:  # noqa: BLE001 - any other failure is technical
        log.warning("handler %s.%s failed:\n%s", service.name, command["name"],
                    traceback.format_exc())
        return {"outcome": ReplyOutcome.TECHNICAL_ERROR, "result": None,
                "error": f"{type(exc).__name__}: {exc}"}, {}
    try:
        dumps_body(result, limit=max_payload_bytes)
        for written, value in staged.writes.items():  # each is a record of <service>.state
            dumps_body(value, limit=max_payload_bytes - len(written.encode()))
    except CodecError as exc:  # retrying the same code cannot help
        return {"outcome": ReplyOutcome.BUSINESS_ERROR, "result": None,
                "error": f"unencodable_result: {exc}"[:1000]}, {}
    return {"outcome": ReplyOutcome.OK, "result": result, "error": ""}, staged.writes
