"""The timer index: pending durable timers by due time, a cache of saga.timers.

Like the projection it is rebuildable: saga.timers is compacted (a record per pending
timer, a tombstone once fired or cancelled), so replaying it from the start gives every
pending timer back. Due timers are found by one seek per partition: the keys sort by
(partition, due time), and a scan stops at the first timer not yet due.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from saga.store.rocksdb import RocksStore, open_or_wipe


@dataclass(frozen=True)
class PendingTimer:
    partition: int
    timer_id: str
    saga_id: str
    due_ms: int
    #: A reply deadline from the projection's deadline index (not a saga.timers timer):
    #: firing it writes no tombstone.
    deadline: bool = False


@dataclass(frozen=True)
class PartitionTimers:
    pending: int
    overdue: int
    next_due_ms: int | None


class TimerIndex(Protocol):
    def apply(self, scheduled: Iterable[PendingTimer], removed: Iterable[str],
              offsets: Mapping[int, int]) -> None:
        """Add ``scheduled``, drop ``removed`` (timer ids) and store saga.timers offsets,
        atomically."""
        ...

    def due(self, partitions: Iterable[int], now_ms: int, limit: int) -> list[PendingTimer]:
        """Up to ``limit`` timers due by ``now_ms``, earliest first within a partition."""
        ...

    def offset(self, partition: int) -> int | None: ...

    def stats(self, partition: int, now_ms: int) -> PartitionTimers: ...

    def close(self) -> None: ...


class MemoryTimerIndex:
    def __init__(self) -> None:
        self._timers: dict[str, PendingTimer] = {}
        self._offsets: dict[int, int] = {}

    def apply(self, scheduled: Iterable[PendingTimer], removed: Iterable[str],
              offsets: Mapping[int, int]) -> None:
        for timer in scheduled:
            self._timers[timer.timer_id] = timer
        for timer_id in removed:
            self._timers.pop(timer_id, None)
        self._offsets.update(offsets)

    def due(self, partitions: Iterable[int], now_ms: int, limit: int) -> list[PendingTimer]:
        wanted = set(partitions)
        ready = sorted((t for t in self._timers.values()
                        if t.partition in wanted and t.due_ms <= now_ms),
                       key=lambda t: (t.partition, t.due_ms, t.timer_id))
        return fair_share(ready, limit)

    def offset(self, partition: int) -> int | None:
        return self._offsets.get(partition)

    def stats(self, partition: int, now_ms: int) -> PartitionTimers:
        mine = [t.due_ms for t in self._timers.values() if t.partition == partition]
        return PartitionTimers(len(mine), sum(1 for d in mine if d <= now_ms),
                               min(mine) if mine else None)

    def close(self) -> None:
        pass


_DUE, _ID, _COUNT = b"d\x00", b"i\x00", b"c\x00"
FORMAT = b"2"
_POSITION = struct.Struct(">IQ")  # partition, due time: big-endian, so keys sort by both


class RocksTimerIndex:
    """Keys: ``d\\0<partition><due ms><timer id>`` -> saga id (the due-time order),
    ``i\\0<timer id>`` -> its position (to find and drop it), ``c\\0<partition>`` -> how
    many are pending there (so stats never scan the pending ones); offsets in RocksStore."""

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self._store = RocksStore(path, fmt=FORMAT, what="timer index",
                                 rebuilt_from="saga.timers", read_only=read_only)

    @classmethod
    def open_or_rebuild(cls, path: Path) -> tuple[RocksTimerIndex, bool]:
        """Open the index, or wipe it when unreadable; True when it was wiped."""
        return open_or_wipe(cls, path)

    def apply(self, scheduled: Iterable[PendingTimer], removed: Iterable[str],
              offsets: Mapping[int, int]) -> None:
        batch = self._store.batch()
        counts: dict[int, int] = {}
        gone: set[str] = set()
        for timer_id in removed:
            position = self._store.get(_ID + timer_id.encode())
            if position is not None and timer_id not in gone:
                gone.add(timer_id)
                batch.delete(_DUE + position + timer_id.encode())
                batch.delete(_ID + timer_id.encode())
                partition = _POSITION.unpack(position)[0]
                counts[partition] = counts.get(partition, 0) - 1
        added: set[str] = set()
        for timer in scheduled:
            position = _POSITION.pack(timer.partition, timer.due_ms)
            old = self._store.get(_ID + timer.timer_id.encode())
            if old is not None and old != position:
                batch.delete(_DUE + old + timer.timer_id.encode())
            if (old is None or timer.timer_id in gone) and timer.timer_id not in added:
                added.add(timer.timer_id)
                counts[timer.partition] = counts.get(timer.partition, 0) + 1
            batch.put(_DUE + position + timer.timer_id.encode(), timer.saga_id.encode())
            batch.put(_ID + timer.timer_id.encode(), position)
        for partition, delta in counts.items():
            if delta:
                batch.put(_count_key(partition),
                          str(max(0, self._count(partition) + delta)).encode())
        self._store.put_offsets(batch, offsets)
        self._store.write(batch)

    def _count(self, partition: int) -> int:
        raw = self._store.get(_count_key(partition))
        return int(raw) if raw is not None else 0

    def due(self, partitions: Iterable[int], now_ms: int, limit: int) -> list[PendingTimer]:
        ready: list[PendingTimer] = []
        for partition in sorted(partitions):
            for taken, timer in enumerate(self._scan(partition)):
                if timer.due_ms > now_ms or taken >= limit:
                    break
                ready.append(timer)
        return fair_share(ready, limit)

    def offset(self, partition: int) -> int | None:
        return self._store.offset(partition)

    @property
    def store(self) -> RocksStore:
        """The RocksDB store underneath (its source stamp, for the coordinator)."""
        return self._store

    def stats(self, partition: int, now_ms: int) -> PartitionTimers:
        """Reads only the overdue timers: the pending count is kept."""
        overdue = 0
        first: int | None = None
        for timer in self._scan(partition):
            first = timer.due_ms if first is None else first
            if timer.due_ms > now_ms:
                break
            overdue += 1
        return PartitionTimers(self._count(partition), overdue, first)

    def close(self) -> None:
        self._store.close()

    def _scan(self, partition: int) -> Iterator[PendingTimer]:
        for key, value in self._store.scan(_DUE + struct.pack(">I", partition)):
            _, due_ms = _POSITION.unpack(key[len(_DUE):len(_DUE) + _POSITION.size])
            yield PendingTimer(partition, key[len(_DUE) + _POSITION.size:].decode(),
                               value.decode(), due_ms)


def _count_key(partition: int) -> bytes:
    return _COUNT + str(partition).encode()


def fair_share(ready: list[PendingTimer], limit: int) -> list[PendingTimer]:
    """At most ``limit``, taken round-robin across partitions so none starves."""
    if len(ready) <= limit:
        return ready
    by_partition: dict[int, list[PendingTimer]] = {}
    for timer in ready:
        by_partition.setdefault(timer.partition, []).append(timer)
    chosen: list[PendingTimer] = []
    queues = [iter(q) for q in by_partition.values()]
    while len(chosen) < limit and queues:
        for queue in list(queues):
            following = next(queue, None)
            if following is None:
                queues.remove(queue)
            elif len(chosen) < limit:
                chosen.append(following)
    return chosen
