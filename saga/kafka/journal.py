"""Reading saga.journal back (read_committed): for catch-up on assignment, `saga rebuild`,
`saga verify-replay` and the tools. Decoding only: folding the entries into state is
the coordinator's recovery (saga/coordinator/recovery.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from typing import NamedTuple

from saga.config import KafkaConnection
from saga.engine import events as ev
from saga.errors import BodyUnavailable, CodecError
from saga.kafka import clients
from saga.kafka.records import RecordCodec


class JournalRecord(NamedTuple):
    """One record read back (a NamedTuple: one is made per journal record a rebuild
    reads, and a frozen dataclass's __init__ costs a setattr per field)."""

    partition: int
    offset: int
    entry: ev.Entry | None  # None at the end of a partition, or when undecodable
    error: CodecError | None = None
    cause: str | None = None  # the inbox record whose decision wrote it

    @property
    def end_of_partition(self) -> bool:
        return self.entry is None and self.error is None

    @property
    def next_offset(self) -> int:
        """Where reading this partition goes on after this record."""
        return self.offset if self.end_of_partition else self.offset + 1


def read_journal(kafka: KafkaConnection, topic: str, starts: Mapping[int, int | None],
                 codec: RecordCodec) -> Iterator[JournalRecord]:
    """Every committed record from each partition's start to its current end.

    At each partition's end one record with ``entry=None`` and ``offset`` = the next
    offset to read (past transaction markers) is yielded.
    """
    for item in clients.read_to_end(kafka, topic, starts):
        if isinstance(item, clients.EndOfPartition):
            yield JournalRecord(item.partition, item.offset, None)
            continue
        _, partition, offset = clients.where(item)
        try:
            entry, cause = codec.decode_journal(item.value())
        except BodyUnavailable:
            raise  # a setting to fix, not a record to pass over: every later one needs it
        except CodecError as exc:
            yield JournalRecord(partition, offset, None, exc)
            continue
        yield JournalRecord(partition, offset, entry, cause=cause)


def backlog(kafka: KafkaConnection, topic: str, starts: Mapping[int, int | None]) -> int:
    """Records between each start and the partition's end (markers included: an estimate)."""
    probe = clients.consumer(kafka, f"saga-backlog-{uuid.uuid4().hex}")
    try:
        total = 0
        for partition, start in starts.items():
            low, high = clients.watermarks(probe, topic, partition)
            total += max(0, high - max(low, start or 0))
        return total
    finally:
        probe.close()
