"""When aborting a failed batch fails too, the coordinator replaces its producer and reads
the batch again rather than exiting; a fenced producer still stops it; reading a batch
again seeks only the partitions still owned (no Kafka needed: clients that fail as
librdkafka does).

Seen in CI: the coordinator lost every partition on a loaded machine, its next
transaction failed, and abort_transaction raised INVALID_TXN_STATE ("Failed to end
transaction"), which escaped and ended the process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from saga.config import Settings
from saga.coordinator.checkpoint import Checkpoint
from saga.coordinator.failures import Retry
from saga.coordinator.loop import Coordinator
from saga.coordinator.outbox import Outbox, Topics
from saga.engine.workflow import WorkflowRegistry
from saga.errors import CoordinatorFenced, RecordRefused
from saga.kafka.records import RecordCodec
from saga.store.projection import MemoryProjection
from saga.store.timer_index import MemoryTimerIndex


class Producer:
    """A transactional producer whose abort_transaction raises ``abort_error``."""

    def __init__(self, abort_error: KafkaError | None = None) -> None:
        self.abort_error = abort_error
        self.aborts = 0

    def abort_transaction(self, timeout: float) -> None:
        self.aborts += 1
        if self.abort_error is not None:
            raise KafkaException(self.abort_error)


def _coordinator(tmp_path: Path, producer: Producer, said: list[str] | None = None
                 ) -> tuple[Coordinator, list[Producer]]:
    coordinator = Coordinator(Settings(state_dir=tmp_path), WorkflowRegistry(),
                              progress=(said if said is not None else []).append)
    coordinator.failures.producer = producer
    started: list[Producer] = []

    def new_producer() -> Producer:
        started.append(Producer())
        return started[-1]

    coordinator._new_producer = new_producer  # type: ignore[method-assign]
    return coordinator, started


def _checkpoint(producer: Producer) -> Checkpoint:
    return Checkpoint(producer, None, Topics.of(Settings()), MemoryProjection(),
                      MemoryTimerIndex())


ABORTABLE = KafkaException(KafkaError(KafkaError._TIMED_OUT, "commit timed out",
                                      txn_requires_abort=True))


def test_an_abort_that_works_keeps_the_producer(tmp_path: Path) -> None:
    producer = Producer()
    coordinator, started = _coordinator(tmp_path, producer)
    retry = coordinator.failures.aborted(ABORTABLE, _checkpoint(producer))
    assert producer.aborts == 1
    assert coordinator.failures.producer is producer
    assert not started
    assert "transaction aborted" in retry.why


@pytest.mark.parametrize("fails", ["aborted", "refused_record"])
def test_an_abort_that_fails_replaces_the_producer(tmp_path: Path, fails: str) -> None:
    broken = Producer(KafkaError(KafkaError._STATE, "Failed to end transaction"))
    said: list[str] = []
    coordinator, started = _coordinator(tmp_path, broken, said)
    cause: Exception = ABORTABLE if fails == "aborted" else \
        RecordRefused("Kafka refused a record", source=(0, 7))
    retry = getattr(coordinator.failures, fails)(cause, _checkpoint(broken))
    assert broken.aborts == 1
    assert len(started) == 1
    assert coordinator.failures.producer is started[0]
    assert retry.why == "re-reading the batch after replacing the producer"
    assert said == ["aborting the transaction failed (KafkaError{code=_STATE,val=-172,"
                    "str=\"Failed to end transaction\"}); replacing the transactional "
                    "producer"]
    assert retry.pause_s > 0  # an abort that keeps failing does not spin the loop


def test_a_fenced_producer_that_cannot_abort_stops_the_process(tmp_path: Path) -> None:
    fenced = Producer(KafkaError(KafkaError._FENCED, "fenced by a newer instance"))
    coordinator, started = _coordinator(tmp_path, fenced)
    with pytest.raises(CoordinatorFenced, match="cannot go on") as stopped:
        coordinator.failures.aborted(ABORTABLE, _checkpoint(fenced))
    assert "another instance with the same --instance-id" in (stopped.value.hint or "")
    assert not started  # the newer instance is not fenced back


class Consumed:
    def __init__(self, partition: int, offset: int) -> None:
        self._at = (partition, offset)

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return Topics.of(Settings()).inbox

    def partition(self) -> int:
        return self._at[0]

    def offset(self) -> int:
        return self._at[1]


class SeekingConsumer:
    def __init__(self) -> None:
        self.seeks: list[tuple[int, int]] = []

    def seek(self, where: TopicPartition) -> None:
        self.seeks.append((where.partition, where.offset))


def test_a_batch_read_again_seeks_only_the_partitions_still_owned(tmp_path: Path) -> None:
    coordinator, _ = _coordinator(tmp_path, Producer())
    consumer = coordinator.consumer = SeekingConsumer()
    coordinator.ownership.assigned([], [0, 2])
    batch: list[Any] = [Consumed(0, 5), Consumed(1, 9), Consumed(0, 6), Consumed(2, 3)]
    coordinator._retry_batch(batch, Outbox(Topics.of(Settings()), RecordCodec(), "c"),
                             Retry("re-reading the batch"))
    assert consumer.seeks == [(0, 5), (2, 3)]  # 1 moved away meanwhile
