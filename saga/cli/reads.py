"""Reading saga state for the CLI: the live projections of the coordinators on this
machine, opened read-only while they run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from saga.config import Settings
from saga.engine import events as ev
from saga.engine.state import SagaState
from saga.errors import SagaError
from saga.state.port import ProjectionCorrupt
from saga.state.rocks import RocksProjection


def projection_dirs(settings: Settings) -> list[Path]:
    root = settings.state_dir / "coordinator"
    return sorted(p for p in root.glob("*/projection") if (p / "CURRENT").exists())


class LocalProjections:
    """Every coordinator projection under the state folder (or only ``instance``'s),
    merged: per saga, the copy with the most entries wins (after a rebalance an old
    owner may hold a stale copy)."""

    def __init__(self, settings: Settings, instance: str | None = None) -> None:
        dirs = [d for d in projection_dirs(settings)
                if instance is None or d.parent.name == instance]
        if not dirs:
            which = f"of instance {instance!r} " if instance else ""
            raise SagaError(f"no coordinator projection {which}under {settings.state_dir}",
                            hint="run `saga coordinator run` (or `make demo`) first, or set "
                            "SAGA_STATE_DIR to the coordinators' state folder; instances "
                            "here: " + (", ".join(d.parent.name for d in
                                                  projection_dirs(settings)) or "none"))
        #: instance id -> its projection (the folder above ``projection``)
        self.instances: dict[str, RocksProjection] = {}
        for path in dirs:
            try:
                self.instances[path.parent.name] = RocksProjection(path, read_only=True)
            except ProjectionCorrupt:
                continue

    def get(self, saga_id: str) -> SagaState | None:
        found = [s for p in self.instances.values() if (s := p.get(saga_id)) is not None]
        return max(found, key=lambda s: s.seq) if found else None

    def history(self, saga_id: str) -> list[ev.Entry]:
        best: list[ev.Entry] = []
        for part in self.instances.values():
            entries = part.history(saga_id)
            if len(entries) > len(best):
                best = entries
        return best

    def states(self) -> Iterator[SagaState]:
        merged: dict[str, SagaState] = {}
        for part in self.instances.values():
            for state in part.states():
                held = merged.get(state.saga_id)
                if held is None or held.seq < state.seq:
                    merged[state.saga_id] = state
        return iter(merged.values())

    def journal_offset(self, partition: int) -> int | None:
        return None

    def close(self) -> None:
        for part in self.instances.values():
            part.close()


def timer_report(settings: Settings, now_ms: int) -> list[dict[str, Any]]:
    """Per partition: pending and overdue timers and the next due time, from the
    coordinators' timer indexes here (per partition, the index that read furthest)."""
    from saga.state.timers import RocksTimerIndex

    paths = sorted(p for p in (settings.state_dir / "coordinator").glob("*/timers")
                   if (p / "CURRENT").exists())
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
