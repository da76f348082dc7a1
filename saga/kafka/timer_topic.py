"""Reading saga.timers, the delayed-message topic, back (read_committed).

Records are keyed by timer id (so compaction keeps one per timer) and written to the
partition of their saga (so co-partitioning holds: the owner of partition p owns the
timers of p's sagas). A tombstone ends a timer once it fired or was cancelled.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from saga.config import KafkaConnection
from saga.errors import CodecError
from saga.kafka import clients
from saga.kafka.records import RecordCodec


@dataclass(frozen=True)
class TimerRecord:
    partition: int
    offset: int
    timer_id: str
    saga_id: str | None  # None: the timer ended (tombstone or CANCEL)
    due_ms: int = 0


def read_timers(kafka: KafkaConnection, topic: str, starts: Mapping[int, int | None],
                codec: RecordCodec) -> Iterator[TimerRecord | clients.EndOfPartition]:
    """Every record past ``starts``; records that are not timer requests are skipped (the
    coordinator never writes one; nobody else writes saga.timers)."""
    for item in clients.read_to_end(kafka, topic, starts, batch=2000):
        if isinstance(item, clients.EndOfPartition):
            yield item
            continue
        _, partition, offset = clients.where(item)
        timer_id = (item.key() or b"").decode()
        try:
            request = codec.decode_timer(item.value())
        except CodecError:
            continue
        if request is None:
            yield TimerRecord(partition, offset, timer_id, None)
        else:
            yield TimerRecord(partition, offset, timer_id, request["saga_id"],
                              request["due_ms"])
