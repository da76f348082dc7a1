"""Sending inputs to sagas: records on saga.inbox, keyed by saga id (murmur2, like every
kafka-saga producer), for the CLI and the tools."""

from __future__ import annotations

from typing import Any

from opentelemetry.trace import SpanKind

from saga.config import Settings
from saga.engine.ids import MAX_SAGA_ID_BYTES, saga_id_too_long
from saga.engine.inputs import DeliverSignal, Input, StartSaga
from saga.errors import ConfigError, KafkaUnavailable
from saga.kafka import clients
from saga.kafka.headers import Headers
from saga.kafka.records import RecordCodec
from saga.telemetry import tracing


def check_saga_id(saga_id: str) -> None:
    if not saga_id or "\x00" in saga_id:
        raise ConfigError(f"saga id {saga_id!r} is empty or holds a NUL byte",
                          hint="use a non-empty id of printable characters")
    if saga_id_too_long(saga_id):
        raise ConfigError(f"a saga id of {len(saga_id.encode(errors='surrogatepass'))} bytes "
                          f"is over the limit of {MAX_SAGA_ID_BYTES}",
                          hint="use a shorter id (a key into your own data, not the data); "
                          "the coordinator dead-letters longer ones (saga_id_too_long)")


class InboxProducer:
    def __init__(self, settings: Settings) -> None:
        self.topic = settings.topic("saga.inbox")
        self.codec = RecordCodec.for_settings(settings)
        self._producer = clients.producer(settings.kafka)
        self._failures: list[str] = []

    def send(self, saga_id: str, value: Input) -> None:
        """Queue ``value`` for the saga; `flush()` delivers. Waits while the queue is full."""
        check_saga_id(saga_id)
        with tracing.span(_span_name(value), kind=SpanKind.PRODUCER,
                          attributes={"saga.id": saga_id}) as traceparent:
            self.send_raw(saga_id.encode(), self.codec.encode_inbox(saga_id, value),
                          _headers(traceparent))

    def send_raw(self, key: bytes | None, value: bytes | None,
                 headers: Headers | None = None) -> None:
        """Queue raw bytes (tests of bad input)."""
        while True:
            try:
                self._producer.produce(self.topic, value, key, headers=headers,
                                       on_delivery=self._delivered)
                return
            except BufferError:
                self._producer.poll(0.1)

    def deliver(self, saga_id: str, value: Input, timeout_s: float = 30) -> tuple[int, int]:
        """Send ``value`` and wait for it: the (partition, offset) it was written at."""
        check_saga_id(saga_id)
        where: list[tuple[int, int]] = []
        failed: list[str] = []

        def delivered(error: object, message: Any) -> None:
            if error is not None:
                failed.append(str(error))
            else:
                where.append((message.partition(), message.offset()))

        with tracing.span(_span_name(value), kind=SpanKind.PRODUCER,
                          attributes={"saga.id": saga_id}) as traceparent:
            self._producer.produce(self.topic, self.codec.encode_inbox(saga_id, value),
                                   saga_id.encode(), headers=_headers(traceparent),
                                   on_delivery=delivered)
            self._producer.flush(timeout_s)
        if not where:
            raise KafkaUnavailable(
                f"the input for saga {saga_id} was not delivered: {failed or 'timed out'}",
                hint="check the cluster (SAGA_BOOTSTRAP_SERVERS), then send it again: a "
                "repeated start or signal is safe")
        return where[0]

    def flush(self, timeout_s: float = 60) -> None:
        left = self._producer.flush(timeout_s)
        failures, self._failures = self._failures, []
        if left or failures:
            raise KafkaUnavailable(
                f"{left or len(failures)} input(s) for saga.inbox were not delivered: "
                f"{failures[:3] or 'timed out'}",
                hint="check the cluster (`saga kafka status`, SAGA_BOOTSTRAP_SERVERS), then "
                "send again: a repeated start or signal is safe")

    def _delivered(self, error: object, _message: object) -> None:
        if error is not None:
            self._failures.append(str(error))


def _span_name(value: Input) -> str:
    if isinstance(value, StartSaga):
        return f"saga.start {value.saga_type}"
    if isinstance(value, DeliverSignal):
        return f"saga.signal {value.name}"
    return f"saga.send {type(value).__name__}"


def _headers(traceparent: str | None) -> Headers | None:
    return [(tracing.TRACEPARENT, traceparent.encode())] if traceparent else None
