"""Bringing local state up to date with Kafka: on every assignment (before any input is
processed), when a store was wiped, and for `saga rebuild`.

The projection catches up from its stored journal offsets to the end of saga.journal,
folding each entry into its saga's state; the timer index from its stored offsets to the
end of saga.timers. Both write data and offsets in one batch, so a crash mid-way resumes
from where the last batch ended.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from saga.config import KafkaConnection, Settings
from saga.engine import events as ev
from saga.engine.state import SagaState, apply, check_sequence
from saga.kafka import clients
from saga.kafka.journal import backlog, read_journal
from saga.kafka.partitioner import partition_of
from saga.kafka.records import RecordCodec
from saga.kafka.timer_topic import TimerRecord, read_timers
from saga.store.projection import (
    DeadlineChanges,
    Projection,
    RocksProjection,
    checksum_stored,
    partition_report,
)
from saga.store.timer_index import PendingTimer, TimerIndex

log = logging.getLogger("saga.coordinator")
Progress = Callable[[int, int], None]


def catch_up(projection: Projection, kafka: KafkaConnection, topic: str, partitions: Iterable[int],
             codec: RecordCodec, *, flush_every: int = 5000,
             on_progress: Progress | None = None) -> int:
    """Apply journal records past the projection's stored offsets; returns entries applied.

    ``on_progress(records read, records to read)`` is called as it goes. Reading from
    the stored offsets, every entry is the saga's next one: an entry past it (a gap) or
    before it (a second entry with a seq the saga already has: two writers, such as a
    zombie owner) raises JournalGap. Neither is ever papered over.
    """
    starts = {p: projection.journal_offset(p) for p in partitions}
    total = backlog(kafka, topic, starts) if on_progress else 0
    seen = 0
    states: dict[str, SagaState] = {}
    #: per saga of the current chunk: its partition and its state before the chunk,
    #: whose reply deadlines the deadline index holds
    befores: dict[str, tuple[int, SagaState | None]] = {}
    entries: list[ev.Entry] = []
    offsets: dict[int, int] = {}
    applied = 0

    def flush() -> None:
        changes = DeadlineChanges()
        for saga_id, (partition, before) in befores.items():
            changes.track(partition, before, states[saga_id])
        projection.commit(states, entries, offsets, changes)

    for record in read_journal(kafka, topic, starts, codec):
        offsets[record.partition] = record.next_offset
        if record.end_of_partition:
            continue
        if on_progress is not None:
            seen += 1
            on_progress(min(seen, total), total)
        if record.error is not None:
            # The coordinator never writes one; say where it is rather than stop every
            # saga of the partition on it.
            log.warning("%s/%d/%d is not a journal entry, passed over: %s", topic,
                        record.partition, record.offset, record.error)
            continue
        entry = record.entry
        assert entry is not None
        state = states.get(entry.saga_id)
        if state is None:
            held = projection.get(entry.saga_id)
            befores[entry.saga_id] = (record.partition, held)
            state = held or SagaState(entry.saga_id)
        check_sequence(state, entry, f"{topic}/{record.partition}/{record.offset}")
        states[entry.saga_id] = apply(state, entry)
        entries.append(entry)
        applied += 1
        if len(entries) >= flush_every:
            flush()
            states, entries, befores = {}, [], {}
    flush()
    if on_progress is not None:
        on_progress(total, total)
    return applied


def catch_up_timers(index: TimerIndex, kafka: KafkaConnection, topic: str,
                    partitions: Iterable[int], codec: RecordCodec, *,
                    flush_every: int = 20000) -> int:
    """Apply saga.timers records past the index's stored offsets; returns records read."""
    starts = {p: index.offset(p) for p in partitions}
    scheduled: dict[str, PendingTimer] = {}
    removed: set[str] = set()
    offsets: dict[int, int] = {}
    read = 0
    for item in read_timers(kafka, topic, starts, codec):
        if isinstance(item, clients.EndOfPartition):
            offsets[item.partition] = item.offset
            continue
        offsets[item.partition] = item.offset + 1
        read += 1
        _fold_timer(item, scheduled, removed)
        if len(scheduled) + len(removed) >= flush_every:
            index.apply(scheduled.values(), removed, offsets)
            scheduled, removed = {}, set()
    index.apply(scheduled.values(), removed, offsets)
    return read


def _fold_timer(record: TimerRecord, scheduled: dict[str, PendingTimer],
                removed: set[str]) -> None:
    if record.saga_id is None:
        scheduled.pop(record.timer_id, None)
        removed.add(record.timer_id)
    else:
        removed.discard(record.timer_id)
        scheduled[record.timer_id] = PendingTimer(record.partition, record.timer_id,
                                                  record.saga_id, record.due_ms)


def rebuild_projection(settings: Settings, into: Path, *,
                       on_progress: Progress | None = None) -> dict[str, Any]:
    """Replay the whole journal into a fresh projection at ``into``: its checksum, saga
    and event counts, and per partition its checksum and journal offset."""
    topic = settings.topic("saga.journal")
    projection = RocksProjection(into)
    try:
        partitions = clients.partitions_of(settings.kafka, topic)
        applied = catch_up(projection, settings.kafka, topic, partitions,
                           RecordCodec.for_settings(settings),
                           on_progress=on_progress)
        digest, count = checksum_stored(projection.stored_states())
        return {"checksum": digest, "sagas": count, "events": applied,
                "partitions": partition_report(
                    projection, lambda saga_id: partition_of(saga_id, len(partitions)))}
    finally:
        projection.close()


def fold_journal(settings: Settings, on_entry: Callable[[ev.Entry], None] | None = None
                 ) -> dict[str, SagaState]:
    """Every saga's state, folded straight from saga.journal (no projection involved);
    ``on_entry`` sees each entry folded (`saga verify-replay --dump`)."""
    topic = settings.topic("saga.journal")
    messages = RecordCodec.for_settings(settings)
    states: dict[str, SagaState] = {}
    starts: dict[int, int | None] = dict.fromkeys(
        clients.partitions_of(settings.kafka, topic))
    for record in read_journal(settings.kafka, topic, starts, messages):
        if record.entry is not None:
            held = states.get(record.entry.saga_id) or SagaState(record.entry.saga_id)
            check_sequence(held, record.entry, f"{topic}/{record.partition}/{record.offset}")
            states[record.entry.saga_id] = apply(held, record.entry)
            if on_entry is not None:
                on_entry(record.entry)
    return states
