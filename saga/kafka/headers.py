"""The names of every Kafka record header kafka-saga writes: one place, so outside
auditors (any Kafka client, no Avro needed) and our own readers agree.

Commands carry which command and which decision; journal records their event type;
timer records what happened to the timer; dead letters why they were set aside.
"""

from __future__ import annotations

from enum import StrEnum

from saga.engine.ids import idempotency_key

Headers = list[tuple[str, str | bytes | None]]

COMMAND = "saga.command"  # e.g. payments.charge
COMMAND_ID = "saga.command_id"
IDEMPOTENCY_KEY = "saga.idempotency_key"  # the same for every attempt of a step
COMMAND_KIND = "saga.kind"  # ACTION or COMPENSATION
SAGA_ID = "saga.saga_id"
EVENT = "saga.event"  # journal: the event type, e.g. CommandIssued
TIMER_ACTION = "saga.timer.action"
DLQ_REASON = "saga.dlq.reason"
DLQ_DETAIL = "saga.dlq.detail"
DLQ_COMPONENT = "saga.dlq.component"
DLQ_SOURCE = "saga.dlq.source"  # topic/partition/offset of the original record
REDRIVEN_FROM = "saga.dlq.redriven_from"
#: On an inbox record only its writer may send (a reply, a fired timer, a child's start
#: or end): HMAC-SHA256 of its topic and value under that writer's key
#: (saga/codec/origin.py).
ORIGIN_MAC = "saga.origin.mac"

#: Longest dead-letter detail kept in a header (the Avro value keeps more).
_DETAIL_LIMIT = 1000


class TimerAction(StrEnum):
    SCHEDULE = "SCHEDULE"
    CANCEL = "CANCEL"
    FIRED = "FIRED"


def command(service: str, name: str, command_id: str, kind: str, saga_id: str) -> Headers:
    return [(COMMAND, f"{service}.{name}".encode()), (COMMAND_ID, command_id.encode()),
            (IDEMPOTENCY_KEY, idempotency_key(command_id).encode()),
            (COMMAND_KIND, kind.encode()), (SAGA_ID, saga_id.encode())]


def journal(event_type: str) -> Headers:
    return [(EVENT, event_type.encode())]


def timer(action: TimerAction) -> Headers:
    return [(TIMER_ACTION, action.value.encode())]


def dead_letter(reason: str, detail: str, component: str, topic: str, partition: int,
                offset: int) -> Headers:
    return [(DLQ_REASON, reason.encode()), (DLQ_DETAIL, detail[:_DETAIL_LIMIT].encode()),
            (DLQ_COMPONENT, component.encode()),
            (DLQ_SOURCE, f"{topic}/{partition}/{offset}".encode())]


def as_text(headers: list[tuple[str, bytes | None]] | None) -> dict[str, str]:
    """Headers of a consumed record as text, the last value of a name winning."""
    return {k: (v or b"").decode(errors="replace") for k, v in headers or []}
