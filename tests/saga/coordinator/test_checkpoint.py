"""A record Kafka will never take stops nothing but its own input: the checkpoint names
the input that wrote it, whether librdkafka refuses it at produce() or the broker in its
delivery report (no Kafka needed: a producer that refuses as they do)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from saga.config import Settings
from saga.coordinator.checkpoint import Checkpoint
from saga.coordinator.outbox import Outbox, Topics
from saga.errors import RecordRefused
from saga.kafka.dead_letters import Source
from saga.kafka.records import DeadLetterReason, RecordCodec
from saga.store.projection import MemoryProjection
from saga.store.timer_index import MemoryTimerIndex

TOPICS = Topics.of(Settings())


class Sent:
    def __init__(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        self._where = (topic, key, value)

    def topic(self) -> str:
        return self._where[0]

    def key(self) -> bytes | None:
        return self._where[1]

    def value(self) -> bytes | None:
        return self._where[2]

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return 0


class RefusingProducer:
    """Refuses records over ``local`` bytes at produce(), as librdkafka does past its
    message.max.bytes, and those over ``broker`` in the delivery report."""

    def __init__(self, *, local: int = 10**9, broker: int = 10**9) -> None:
        self.local, self.broker = local, broker
        self.reports: list[tuple[Callable[..., None], Sent, KafkaError | None]] = []
        self.committed = False

    def begin_transaction(self) -> None:
        pass

    def produce(self, topic: str, value: bytes | None, key: bytes | None, **extra: Any
                ) -> None:
        size = len(value or b"") + len(key or b"")
        if size > self.local:
            raise KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
        error = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE) if size > self.broker else None
        self.reports.append((extra["on_delivery"], Sent(topic, key, value), error))

    def flush(self, timeout: float) -> int:
        for report, message, error in self.reports:
            report(error, message)
        return 0

    def commit_transaction(self, timeout: float) -> None:
        self.committed = True


def _outbox() -> Outbox:
    outbox = Outbox(TOPICS, RecordCodec(), "coordinator")
    outbox.reading = (1, 10)
    outbox.dead_letter(Source(TOPICS.inbox, 1, 10, b"a", b"small"),
                       DeadLetterReason.UNDECODABLE, "small")
    outbox.reading = (2, 20)
    outbox.rerouted("b", b"x" * 5000, 0)
    outbox.reading = None
    return outbox


@pytest.mark.parametrize("producer", [RefusingProducer(local=4000),
                                      RefusingProducer(broker=4000)],
                         ids=["at produce()", "in the delivery report"])
def test_a_refused_record_names_the_input_that_wrote_it(producer: RefusingProducer
                                                        ) -> None:
    checkpoint = Checkpoint(producer, None, TOPICS, MemoryProjection(), MemoryTimerIndex())
    with pytest.raises(RecordRefused) as refused:
        checkpoint.commit(_outbox(), {})
    assert refused.value.source == (2, 20)
    assert TOPICS.inbox in refused.value.message
    assert not producer.committed


def test_a_batch_kafka_takes_whole_commits() -> None:
    producer = RefusingProducer()
    checkpoint = Checkpoint(producer, None, TOPICS, MemoryProjection(), MemoryTimerIndex())
    checkpoint.commit(_outbox(), {})
    assert producer.committed
