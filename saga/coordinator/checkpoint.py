"""One batch committed in one fixed order, by one owner (as Quix Streams' checkpoint
owns its commit order):

    begin transaction → produce the outbox → flush → send the consumed offsets (KIP-447,
    with the consumer's group metadata) → commit → write the local stores

The stores (projection, timer index) are written only after the commit, each with the
offsets its records were delivered at, in the same RocksDB batch as its data: a store
is never ahead of Kafka, and catching up means reading past its stored offsets. This is
the only code that drives the transactional producer; it makes no admin calls.
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition

from saga.coordinator.outbox import Outbox, Topics
from saga.kafka import clients
from saga.store.projection import Projection
from saga.store.timer_index import TimerIndex

#: send_offsets_to_transaction takes milliseconds when healthy; past this the call is
#: taken to be wedged (see _send_offsets).
_SEND_OFFSETS_DEADLINE_S = 15


class Checkpoint:
    def __init__(self, producer: Any, consumer: Any, topics: Topics, projection: Projection,
                 timer_index: TimerIndex) -> None:
        self._producer = producer
        self._consumer = consumer
        self._topics = topics
        self._projection = projection
        self._timer_index = timer_index
        self._delivered: dict[str, dict[int, int]] = {topics.journal: {}, topics.timers: {}}

    def commit(self, outbox: Outbox, offsets: dict[int, int]) -> dict[str, int]:
        """Everything in ``outbox`` and the inbox ``offsets`` (next to read, per
        partition) in one transaction, then the stores; the bytes each saga state was
        stored in. Raises KafkaException or ClientStuck with the transaction left for the
        caller to abort or abandon.

        ``offsets`` should name every partition the instance owns, not only those the
        batch read: the offsets carry the consumer group's generation, which is what
        fences a zombie (KIP-447), so a transaction that only fires timers must send
        them too."""
        producer = self._producer
        producer.begin_transaction()
        for record in outbox.records:
            extra: dict[str, Any] = {}
            if record.partition is not None:
                extra["partition"] = record.partition
            if record.tracked:
                extra["on_delivery"] = self._on_delivery
            _produce(producer, record.topic, record.value, record.key, record.headers, extra)
        self._flush()
        if offsets:
            self._send_offsets(offsets)
        producer.commit_transaction(60)
        changes = outbox.timer_changes
        sizes = self._projection.commit(outbox.states, outbox.entries,
                                        self._delivered[self._topics.journal],
                                        outbox.deadline_changes())
        self._timer_index.apply(changes.scheduled.values(), changes.removed,
                                self._delivered[self._topics.timers])
        return sizes

    def abort(self) -> None:
        self._producer.abort_transaction(30)

    def _flush(self) -> None:
        try:
            self._producer.flush(30)
        except SystemError as exc:
            # A fatal error (e.g. fenced by a newer instance) that strikes while flush
            # serves delivery callbacks reaches Python as a SystemError caused by it.
            if isinstance(exc.__cause__, KafkaException):
                raise exc.__cause__ from exc
            raise

    def _send_offsets(self, next_offsets: dict[int, int]) -> None:
        offsets = [TopicPartition(self._topics.inbox, p, o) for p, o in next_offsets.items()]
        metadata = self._consumer.consumer_group_metadata()
        producer = self._producer
        # Its own timeout does not hold when the group coordinator broker went away
        # (librdkafka #5456, #5511): the call can block for good. A deadline of ours
        # turns that into ClientStuck, and the caller replaces the producer.
        clients.call_with_deadline(
            lambda: producer.send_offsets_to_transaction(offsets, metadata, 10),
            _SEND_OFFSETS_DEADLINE_S, "send_offsets_to_transaction")

    def _on_delivery(self, error: KafkaError | None, message: Message) -> None:
        if error is None:
            topic, partition, offset = clients.where(message)
            offsets = self._delivered[topic]
            offsets[partition] = max(offsets.get(partition, 0), offset + 1)


def _produce(producer: Any, topic: str, value: bytes | None, key: bytes | None,
             headers: Any, extra: dict[str, Any]) -> None:
    """Produce, waiting for room while the local queue is full (a big batch, a slow
    broker): BufferError is back-pressure, not a failure."""
    while True:
        try:
            producer.produce(topic, value, key, headers=headers, **extra)
            return
        except BufferError:
            producer.poll(0.1)
