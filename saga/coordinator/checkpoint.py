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

from saga.coordinator.outbox import Outbox, OutRecord, Topics
from saga.errors import RecordRefused
from saga.kafka import clients
from saga.store.projection import Projection
from saga.store.timer_index import TimerIndex

#: send_offsets_to_transaction takes milliseconds when healthy; past this the call is
#: taken to be wedged (see _send_offsets).
_SEND_OFFSETS_DEADLINE_S = 15
#: Errors of one record that Kafka refuses however often it is sent: librdkafka raises
#: them from produce() itself (past its own message.max.bytes), the broker answers
#: them in the record's delivery report (past the topic's max.message.bytes).
_REFUSED = frozenset({KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE,
                      KafkaError.INVALID_MSG_SIZE, KafkaError.INVALID_RECORD})


class Checkpoint:
    def __init__(self, producer: Any, consumer: Any, topics: Topics, projection: Projection,
                 timer_index: TimerIndex) -> None:
        self._producer = producer
        self._consumer = consumer
        self._topics = topics
        self._projection = projection
        self._timer_index = timer_index
        self._delivered: dict[str, dict[int, int]] = {topics.journal: {}, topics.timers: {}}
        self._records: list[OutRecord] = []
        self._refused: RecordRefused | None = None

    def commit(self, outbox: Outbox, offsets: dict[int, int]) -> dict[str, int]:
        """Everything in ``outbox`` and the inbox ``offsets`` (next to read, per
        partition) in one transaction, then the stores; the bytes each saga state was
        stored in. Raises KafkaException, ClientStuck or RecordRefused (one record Kafka
        will never take, and the input that wrote it) with the transaction left for the
        caller to abort or abandon.

        ``offsets`` should name every partition the instance owns, not only those the
        batch read: the offsets carry the consumer group's generation, which is what
        fences a zombie (KIP-447), so a transaction that only fires timers must send
        them too."""
        producer = self._producer
        producer.begin_transaction()
        self._records = outbox.records
        for record in outbox.records:
            # Every record reports its delivery: a journal or timer record's offset is
            # kept, and any record the broker refuses must be traced to its input.
            extra: dict[str, Any] = {"on_delivery": self._on_delivery}
            if record.partition is not None:
                extra["partition"] = record.partition
            _produce(producer, record, extra)
        self._flush()
        if self._refused is not None:
            raise self._refused
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
            offsets = self._delivered.get(topic)
            if offsets is not None:
                offsets[partition] = max(offsets.get(partition, 0), offset + 1)
        elif error.code() in _REFUSED and self._refused is None:
            # Rare: the search is only paid for a record the broker refused.
            record = next((r for r in self._records if r.topic == message.topic()
                           and r.key == message.key() and r.value == message.value()), None)
            self._refused = _refused(error, message.topic() or "?",
                                     len(message.value() or b"") + len(message.key() or b""),
                                     None if record is None else record.input)


def _produce(producer: Any, record: OutRecord, extra: dict[str, Any]) -> None:
    """Produce, waiting for room while the local queue is full (a big batch, a slow
    broker): BufferError is back-pressure, not a failure."""
    while True:
        try:
            producer.produce(record.topic, record.value, record.key, headers=record.headers,
                             **extra)
            return
        except BufferError:
            producer.poll(0.1)
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            if error.code() not in _REFUSED:
                raise
            raise _refused(error, record.topic, clients.record_bytes(
                record.key, record.value, record.headers), record.input) from exc


def _refused(error: KafkaError, topic: str, size: int, source: tuple[int, int] | None
             ) -> RecordRefused:
    return RecordRefused(f"Kafka refused a record of about {size} bytes for {topic}: "
                         f"{error.str()}", source=source)
