"""The timer wheel of one coordinator: fires the durable timers and the reply deadlines
of the partitions it owns.

Two indexes order what it fires by (partition, due time): the timer index (RocksDB, a
cache of saga.timers) and the projection's deadline index (each step attempt's reply
deadline, held in the saga's state). Each loop turn takes what is due, at most
``limit`` shared round-robin between partitions so a storm cannot starve the inbox, and
the outbox turns each into a ``TimerFired`` for the saga's inbox partition (plus a
timer's tombstone), in the same transaction as the turn's inbox batch. The saga decides
what a fired timer means, so a timer that fires twice acts once.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from saga.coordinator.outbox import Outbox
from saga.store.projection import Projection
from saga.store.timer_index import PendingTimer, TimerIndex, fair_share


class TimerWheel:
    def __init__(self, index: TimerIndex, deadlines: Projection, limit: int) -> None:
        self.index = index
        self.deadlines = deadlines
        self.limit = limit

    def due(self, owned: Iterable[int]) -> list[PendingTimer]:
        partitions = list(owned)
        if not partitions:
            return []
        now_ms = int(time.time() * 1000)
        timers = self.index.due(partitions, now_ms, self.limit)
        deadlines = self.deadlines.due_deadlines(partitions, now_ms, self.limit)
        if not deadlines:
            return timers
        return fair_share(sorted(timers + deadlines,
                                 key=lambda t: (t.partition, t.due_ms, t.timer_id)),
                          self.limit)

    @staticmethod
    def fire(timers: Iterable[PendingTimer], outbox: Outbox) -> None:
        for timer in timers:
            outbox.fired(timer)
