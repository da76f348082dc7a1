"""Reading saga.journal back: catch-up on assignment, `saga rebuild`, `verify-replay`."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from confluent_kafka import TopicPartition

from saga.engine import events as ev
from saga.engine.state import SagaState, apply
from saga.errors import CodecError
from saga.kafka import clients
from saga.kafka.messages import Messages
from saga.state.port import Projection, ProjectionCorrupt


@dataclass(frozen=True)
class JournalRecord:
    partition: int
    offset: int
    entry: ev.Entry | None  # None at the end of a partition
    error: CodecError | None = None


def read_journal(bootstrap: str, topic: str, starts: Mapping[int, int | None],
                 messages: Messages) -> Iterator[JournalRecord]:
    """Every committed record from each partition's start to its current end.

    At each partition's end one record with ``entry=None`` and ``offset`` = the next
    offset to read (past transaction markers) is yielded.
    """
    for item in clients.read_to_end(bootstrap, topic, starts):
        if isinstance(item, clients.EndOfPartition):
            yield JournalRecord(item.partition, item.offset, None)
            continue
        _, partition, offset = clients.where(item)
        try:
            yield JournalRecord(partition, offset, messages.decode_entry(item.value()))
        except CodecError as exc:
            yield JournalRecord(partition, offset, None, exc)


def catch_up(projection: Projection, bootstrap: str, topic: str, partitions: list[int],
             messages: Messages, *, flush_every: int = 5000,
             on_progress: Callable[[int, int], None] | None = None) -> int:
    """Apply journal records past the projection's stored offsets; returns entries applied.

    ``on_progress(records read, records to read)`` is called as it goes.
    """
    starts = {p: projection.journal_offset(p) for p in partitions}
    total = _backlog(bootstrap, topic, starts) if on_progress else 0
    seen = 0
    states: dict[str, SagaState] = {}
    entries: list[ev.Entry] = []
    offsets: dict[int, int] = {}
    applied = 0
    for record in read_journal(bootstrap, topic, starts, messages):
        if on_progress is not None and (record.entry is not None or record.error is not None):
            seen += 1
            on_progress(min(seen, total), total)
        offsets[record.partition] = record.offset + (0 if record.entry is None
                                                     and record.error is None else 1)
        if record.error is not None:
            continue  # an undecodable journal record is skipped; the writer never makes one
        entry = record.entry
        if entry is None:
            continue
        state = states.get(entry.saga_id) or projection.get(entry.saga_id) \
            or SagaState(entry.saga_id)
        if entry.seq < state.seq:
            continue  # already applied
        if entry.seq > state.seq:
            raise ProjectionCorrupt(f"saga {entry.saga_id}: the journal has entry {entry.seq} "
                                    f"but the projection stops at {state.seq}")
        states[entry.saga_id] = apply(state, entry)
        entries.append(entry)
        applied += 1
        if len(entries) >= flush_every:
            projection.commit(states, entries, offsets)
            states, entries = {}, []
    projection.commit(states, entries, offsets)
    if on_progress is not None:
        on_progress(total, total)
    return applied


def _backlog(bootstrap: str, topic: str, starts: Mapping[int, int | None]) -> int:
    """Records between each start and the partition's end (markers included: an estimate)."""
    probe = clients.consumer(bootstrap, f"saga-backlog-{uuid.uuid4().hex}")
    try:
        total = 0
        for partition, start in starts.items():
            low, high = probe.get_watermark_offsets(TopicPartition(topic, partition), 10)
            total += max(0, high - max(low, start or 0))
        return total
    finally:
        probe.close()
