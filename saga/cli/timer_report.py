"""Reading the coordinators' timer indexes on this machine, for `saga timers`."""

from __future__ import annotations

from typing import Any

from saga.config import Settings
from saga.errors import SagaError
from saga.layout import StateLayout
from saga.store.timer_index import RocksTimerIndex


def timer_report(settings: Settings, now_ms: int) -> list[dict[str, Any]]:
    """Per partition: pending and overdue timers and the next due time, from the
    coordinators' timer indexes here (per partition, the index that read furthest)."""
    paths = list(StateLayout(settings.state_dir).timer_indexes().values())
    if not paths:
        raise SagaError(f"no timer index under {settings.state_dir}",
                        hint="run `saga coordinator run` first, or set SAGA_STATE_DIR")
    indexes = [RocksTimerIndex(p, read_only=True) for p in paths]
    try:
        rows = []
        for partition in range(settings.partitions):
            held = [(i.offset(partition), i) for i in indexes]
            offset, best = max(held, key=lambda pair: pair[0] if pair[0] is not None else -1)
            stats = best.stats(partition, now_ms)
            rows.append({"partition": partition, "pending": stats.pending,
                         "overdue": stats.overdue, "next_due_ms": stats.next_due_ms,
                         "offset": offset})
        return rows
    finally:
        for index in indexes:
            index.close()
