"""The timer wheel of one coordinator: fires the durable timers of the partitions it owns.

Its index (RocksDB, a cache of saga.timers) orders pending timers by (partition, due
time); each loop turn takes what is due, at most ``limit`` shared round-robin between
partitions so a storm cannot starve the inbox, and the outbox turns each into a
``TimerFired`` for the saga's inbox partition plus the timer's tombstone, in the same
transaction as the turn's inbox batch. The saga decides what a fired timer means, so a
timer that fires twice acts once.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from saga.coordinator.outbox import Outbox
from saga.store.timer_index import PendingTimer, TimerIndex


class TimerWheel:
    def __init__(self, index: TimerIndex, limit: int) -> None:
        self.index = index
        self.limit = limit

    def due(self, owned: Iterable[int]) -> list[PendingTimer]:
        partitions = list(owned)
        if not partitions:
            return []
        return self.index.due(partitions, int(time.time() * 1000), self.limit)

    @staticmethod
    def fire(timers: Iterable[PendingTimer], outbox: Outbox) -> None:
        for timer in timers:
            outbox.fired(timer)
