"""saga.timers, the delayed-message topic, and its index.

Records are keyed by timer id (so compaction keeps one per timer) and written to the
partition of their saga (so co-partitioning holds: the owner of partition p owns the
timers of p's sagas). A tombstone ends a timer once it fired or was cancelled.
"""

from __future__ import annotations

from collections.abc import Iterable

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
    scheduled: dict[str, PendingTimer] = {}
    removed: set[str] = set()
    offsets: dict[int, int] = {}
    read = 0
    for item in clients.read_to_end(bootstrap, topic, starts, batch=2000):
        if isinstance(item, clients.EndOfPartition):
            offsets[item.partition] = item.offset
            continue
        _, partition, offset = clients.where(item)
        offsets[partition] = offset + 1
        read += 1
        key = (item.key() or b"").decode()
        try:
            request = messages.decode_timer(item.value())
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
    index.apply(scheduled.values(), removed, offsets)
    return read
