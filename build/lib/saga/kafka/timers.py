"""saga.timers, the delayed-message topic, and its index.

Records are keyed by timer id (so compaction keeps one per timer) and written to the
partition of their saga (so co-partitioning holds: the owner of partition p owns the
timers of p's sagas). A tombstone ends a timer once it fired or was cancelled.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, TopicPartition

from saga.errors import CodecError
from saga.kafka import clients
from saga.kafka.messages import Messages
from saga.state.timers import PendingTimer, TimerIndex

TIMER_ACTION_HEADER = "saga.timer.action"


def catch_up_timers(index: TimerIndex, bootstrap: str, topic: str,
                    partitions: Iterable[int], messages: Messages,
                    *, flush_every: int = 20000) -> int:
    """Apply saga.timers records past the index's stored offsets; returns records read."""
    starts = {p: index.offset(p) for p in partitions}
    if not starts:
        return 0
    reader = clients.consumer(bootstrap, f"saga-timers-reader-{uuid.uuid4().hex}",
                              **{"enable.partition.eof": True})
    scheduled: dict[str, PendingTimer] = {}
    removed: set[str] = set()
    offsets: dict[int, int] = {}
    read = 0
    try:
        reader.assign([TopicPartition(topic, p, OFFSET_BEGINNING if o is None else o)
                       for p, o in starts.items()])
        remaining = set(starts)
        while remaining:
            for message in reader.consume(2000, 1.0):
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        _, partition, offset = clients.where(message)
                        remaining.discard(partition)
                        offsets[partition] = offset
                        continue
                    raise KafkaException(error)
                _, partition, offset = clients.where(message)
                offsets[partition] = offset + 1
                read += 1
                key = (message.key() or b"").decode()
                try:
                    request = messages.decode_timer(message.value())
                except CodecError:
                    continue  # not a timer request; the coordinator never writes one
                if request is None:
                    scheduled.pop(key, None)
                    removed.add(key)
                else:
                    removed.discard(key)
                    scheduled[key] = PendingTimer(partition, key, request["saga_id"],
                                                  request["due_ms"])
                if len(scheduled) + len(removed) >= flush_every:
                    index.apply(scheduled.values(), removed, offsets)
                    scheduled, removed = {}, set()
    finally:
        reader.close()
    index.apply(scheduled.values(), removed, offsets)
    return read
