"""The projection: per saga, the folded state and its journal entries; per journal
partition, the next offset to read. A cache of saga.journal, rebuildable at any time.

`commit` applies one batch atomically (data and offsets together, so they can never
disagree); `checksum` is how a rebuild proves it equals the live copy. Two
implementations share one contract (tests/saga/store/test_projection_contract.py):
RocksDB for the coordinator, a dict for tests of the code above the port.

RocksDB keys (saga ids never hold NUL):
  s\\0<saga id>            the folded SagaState, canonical JSON
  e\\0<saga id>\\0<seq>     one journal entry, JSON; seq as 10 digits so keys sort. Only
                          the current run's (continue-as-new) and its SagaContinued: the
                          history a saga keeps here is bounded by its run
  t\\0<partition><due><id>  a reply deadline still running (SagaState.deadlines()) ->
                          its saga id; partition and due time big-endian, so the keys
                          of one partition sort by due time and the timer wheel finds
                          the due ones with one seek. Written in the same batch as the
                          state it comes from, so the two never disagree
  o\\0<partition>          the next saga.journal offset not yet applied (RocksStore)
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson

from saga.engine import events as ev
from saga.engine.replay import journal_line
from saga.engine.state import SagaState
from saga.errors import CodecError, StoreCorrupt
from saga.store.rocksdb import RocksStore, open_or_wipe
from saga.store.timer_index import PendingTimer, fair_share

#: Bumped whenever the stored state's shape changes: a projection of another format is
#: wiped and rebuilt from the journal, which is always readable.
FORMAT = b"5"
_STATE, _ENTRY, _DEADLINE = b"s\x00", b"e\x00", b"t\x00"
_POSITION = struct.Struct(">IQ")  # partition, due time
_NEVER = 2**63  # a due time later than any (ms)


@dataclass
class DeadlineChanges:
    """What one commit does to the deadline index: the deadlines that start running and
    those that stop (answered, timed out, fired, or their saga ended)."""

    added: dict[str, PendingTimer] = field(default_factory=dict)
    removed: dict[str, PendingTimer] = field(default_factory=dict)

    def track(self, partition: int, before: SagaState | None, after: SagaState) -> None:
        """The change from ``before`` to ``after``, the states of one saga in
        ``partition`` at the start and the end of the batch."""
        old = before.deadlines() if before is not None else {}
        new = after.deadlines()
        if not old and not new:
            return
        saga_id = after.saga_id
        for timer_id, due in old.items():
            if new.get(timer_id) != due:
                self.removed[timer_id] = PendingTimer(partition, timer_id, saga_id, due,
                                                      deadline=True)
        for timer_id, due in new.items():
            if old.get(timer_id) != due:
                self.added[timer_id] = PendingTimer(partition, timer_id, saga_id, due,
                                                    deadline=True)

    def fired(self, timer: PendingTimer) -> None:
        """``timer`` fired (its TimerFired is on the way): it leaves the index now, so
        the wheel does not fire it again while the saga decides it."""
        self.removed[timer.timer_id] = timer


class Projection(Protocol):
    def get(self, saga_id: str) -> SagaState | None: ...

    def history(self, saga_id: str) -> list[ev.Entry]: ...

    def journal_offset(self, partition: int) -> int | None:
        """The next saga.journal offset this projection has not applied, if any."""
        ...

    def commit(self, states: Mapping[str, SagaState], entries: Iterable[ev.Entry],
               offsets: Mapping[int, int], deadlines: DeadlineChanges | None = None
               ) -> dict[str, int]:
        """Apply one batch atomically; the bytes each state was stored in."""
        ...

    def due_deadlines(self, partitions: Iterable[int], now_ms: int, limit: int
                      ) -> list[PendingTimer]:
        """Up to ``limit`` reply deadlines due by ``now_ms``, earliest first within a
        partition, shared fairly between partitions."""
        ...

    def states(self) -> Iterator[SagaState]: ...

    def close(self) -> None: ...


class MemoryProjection:
    def __init__(self) -> None:
        self._states: dict[str, SagaState] = {}
        self._entries: dict[str, list[ev.Entry]] = {}
        self._offsets: dict[int, int] = {}
        self._deadlines: dict[str, PendingTimer] = {}

    def get(self, saga_id: str) -> SagaState | None:
        return self._states.get(saga_id)

    def history(self, saga_id: str) -> list[ev.Entry]:
        return list(self._entries.get(saga_id, []))

    def journal_offset(self, partition: int) -> int | None:
        return self._offsets.get(partition)

    def commit(self, states: Mapping[str, SagaState], entries: Iterable[ev.Entry],
               offsets: Mapping[int, int], deadlines: DeadlineChanges | None = None
               ) -> dict[str, int]:
        if deadlines is not None:
            for timer_id in deadlines.removed:
                self._deadlines.pop(timer_id, None)
            self._deadlines.update(deadlines.added)
        for entry in entries:
            held = self._entries.setdefault(entry.saga_id, [])
            if not held or entry.seq == held[-1].seq + 1:
                held.append(entry)
            if isinstance(entry.event, ev.SagaContinued):
                self._entries[entry.saga_id] = [entry]  # a new run: the old ones go
        self._states.update(states)
        self._offsets.update(offsets)
        return {saga_id: len(state.to_bytes()) for saga_id, state in states.items()}

    def due_deadlines(self, partitions: Iterable[int], now_ms: int, limit: int
                      ) -> list[PendingTimer]:
        wanted = set(partitions)
        ready = sorted((t for t in self._deadlines.values()
                        if t.partition in wanted and t.due_ms <= now_ms),
                       key=lambda t: (t.partition, t.due_ms, t.timer_id))
        return fair_share(ready, limit)

    def states(self) -> Iterator[SagaState]:
        return iter(list(self._states.values()))

    def close(self) -> None:
        pass


class RocksProjection:
    """The projection in RocksDB, one database per coordinator instance."""

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = path
        self._store = RocksStore(path, fmt=FORMAT, what="projection",
                                 rebuilt_from="saga.journal", read_only=read_only)
        #: Per partition, a time (ms) before which none of its reply deadlines is due, as
        #: the last look found it; a partition not here is looked at. The wheel asks at
        #: every loop turn, and each look is a RocksDB seek into a range where every
        #: answered deadline leaves a tombstone until compaction: the seeks were 14 % of a
        #: coordinator's samples at 10 sagas/s. A deadline written lowers it; one removed
        #: leaves it early, which costs a look, never a late deadline.
        self._quiet_until: dict[int, int] = {}

    @classmethod
    def open_or_rebuild(cls, path: Path) -> tuple[RocksProjection, bool]:
        """Open the projection, or wipe it when unreadable; True when it was wiped."""
        return open_or_wipe(cls, path)

    def get(self, saga_id: str) -> SagaState | None:
        raw = self._store.get(_STATE + saga_id.encode())
        if raw is None:
            return None
        return _state(raw, saga_id)

    def history(self, saga_id: str) -> list[ev.Entry]:
        held = self.get(saga_id)
        prefix, start, _ = run_history_keys(_ENTRY, saga_id, held.run_started_seq if held else 0, 0)
        try:  # from its run's start: the deleted keys of old runs are not walked over
            return [entry_from_json(value) for _, value in self._store.scan(prefix, start)]
        except (orjson.JSONDecodeError, CodecError, KeyError) as exc:
            raise StoreCorrupt(f"history of saga {saga_id} is unreadable: {exc}",
                               hint="delete the projection; it is rebuilt from "
                               "saga.journal") from exc

    def journal_offset(self, partition: int) -> int | None:
        return self._store.offset(partition)

    def journal_offsets(self) -> dict[int, int]:
        return self._store.offsets()

    @property
    def store(self) -> RocksStore:
        """The RocksDB store underneath (its source stamp, for the coordinator)."""
        return self._store

    def commit(self, states: Mapping[str, SagaState], entries: Iterable[ev.Entry],
               offsets: Mapping[int, int], deadlines: DeadlineChanges | None = None
               ) -> dict[str, int]:
        batch = self._store.batch()
        if deadlines is not None:
            for timer in deadlines.removed.values():
                batch.delete(_deadline_key(timer))
            for timer in deadlines.added.values():
                batch.put(_deadline_key(timer), timer.saga_id.encode())
                quiet = self._quiet_until.get(timer.partition)
                if quiet is not None and timer.due_ms < quiet:
                    self._quiet_until[timer.partition] = timer.due_ms
        entries = list(entries)
        # A new run (continue-as-new): its history starts again, the journal keeps the
        # old runs. What the projection holds of the old run goes; an old run's entries
        # in this same batch are never written.
        new_runs = {e.saga_id: e.seq for e in entries if isinstance(e.event, ev.SagaContinued)}
        for saga_id, seq in new_runs.items():
            held = self.get(saga_id)
            self._store.delete_between(batch, *run_history_keys(
                _ENTRY, saga_id, held.run_started_seq if held else 0, seq))
        for entry in entries:
            if entry.seq < new_runs.get(entry.saga_id, 0):
                continue
            batch.put(_ENTRY + entry.saga_id.encode() + b"\x00" + b"%010d" % entry.seq,
                      entry_to_json(entry))
        sizes = {}
        for saga_id, state in states.items():
            data = state.to_bytes()
            batch.put(_STATE + saga_id.encode(), data)
            sizes[saga_id] = len(data)
        self._store.put_offsets(batch, offsets)
        self._store.write(batch)
        return sizes

    def due_deadlines(self, partitions: Iterable[int], now_ms: int, limit: int
                      ) -> list[PendingTimer]:
        ready: list[PendingTimer] = []
        for partition in sorted(partitions):
            if self._quiet_until.get(partition, now_ms) > now_ms:
                continue
            quiet, taken = _NEVER, 0  # quiet for good unless a deadline is held
            for key, value in self._store.scan(_DEADLINE + struct.pack(">I", partition)):
                _, due_ms = _POSITION.unpack_from(key, len(_DEADLINE))
                if due_ms > now_ms:
                    quiet = due_ms
                    break
                if taken >= limit:
                    break
                taken += 1
                ready.append(PendingTimer(partition,
                                          key[len(_DEADLINE) + _POSITION.size:].decode(),
                                          value.decode(), due_ms, deadline=True))
            if taken:
                # What is due now leaves the index only when its batch commits; until
                # then (or if the batch is aborted) the partition is looked at again.
                self._quiet_until.pop(partition, None)
            else:
                self._quiet_until[partition] = quiet
        return fair_share(ready, limit)

    def ingest(self, path: Path) -> None:
        """Take in a share a rebuild worker exported (``RocksStore.ingest``). Its
        deadlines were never seen here: every partition is looked at again."""
        self._store.ingest(path)
        self._quiet_until.clear()

    def states(self) -> Iterator[SagaState]:
        for saga_id, value in self.stored_states():
            yield _state(value, saga_id)

    def stored_states(self) -> Iterator[tuple[str, bytes]]:
        """Each saga's id and state as stored (``SagaState.to_bytes``), in saga id order:
        what a checksum hashes, with no decoding (which was a fifth of a rebuild)."""
        for key, value in self._store.scan(_STATE):
            yield key[len(_STATE):].decode(), value

    def close(self) -> None:
        self._store.close()


def _deadline_key(timer: PendingTimer) -> bytes:
    return (_DEADLINE + _POSITION.pack(timer.partition, timer.due_ms)
            + timer.timer_id.encode())


def _state(raw: bytes, saga_id: str) -> SagaState:
    try:
        return SagaState.from_json(orjson.loads(raw))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise StoreCorrupt(f"state of saga {saga_id} is unreadable: {exc}",
                           hint="delete the projection; it is rebuilt from "
                           "saga.journal") from exc


def run_history_keys(table: bytes, saga_id: str, run_started_seq: int, end_seq: int
                     ) -> tuple[bytes, bytes, bytes]:
    """Where a saga's history lives in a store whose entry keys are ``table``, saga id,
    NUL, seq: (its prefix, the key its current run starts at, the key of ``end_seq``).
    A run's first entry is its SagaContinued, the one before run_started_seq."""
    prefix = table + saga_id.encode() + b"\x00"
    return (prefix, prefix + b"%010d" % max(0, run_started_seq - 1),
            prefix + b"%010d" % end_seq)


#: An entry as the projection stores it: the line of a journal dump.
entry_to_json = journal_line


def entry_from_json(data: bytes) -> ev.Entry:
    raw: dict[str, Any] = orjson.loads(data)
    return ev.Entry(raw["saga_id"], raw["seq"], raw["at_ms"],
                    ev.from_body(raw["type"], raw["body"]))


def checksum_by_partition(states: Iterable[SagaState], partition_of: Callable[[str], int]
                          ) -> dict[int, tuple[str, int]]:
    """``checksum`` of each partition's sagas, keyed by partition."""
    return _checksums_by_partition(_canonical(states), partition_of)


def partition_report(projection: RocksProjection, partition_of: Callable[[str], int]
                     ) -> dict[str, dict[str, Any]]:
    """Per partition: the checksum and count of its sagas, and the journal offset the
    projection has read it to (invariant 4, instance by instance)."""
    sums = _checksums_by_partition(projection.stored_states(), partition_of)
    offsets = projection.journal_offsets()
    empty = checksum([])
    return {str(p): {"checksum": sums.get(p, empty)[0], "sagas": sums.get(p, empty)[1],
                     "journal_offset": offsets.get(p)}
            for p in sorted(set(sums) | set(offsets))}


def checksum(states: Iterable[SagaState]) -> tuple[str, int]:
    """SHA-256 over every saga's folded state, in saga id order; and the saga count."""
    return checksum_stored(_canonical(states))


def checksum_stored(stored: Iterable[tuple[str, bytes]]) -> tuple[str, int]:
    """``checksum`` of states as stored: (saga id, ``SagaState.to_bytes``) in saga id
    order, as ``RocksProjection.stored_states`` yields them. The same value as
    ``checksum`` of the decoded states, since a state's bytes survive decoding
    (tests/saga/store/test_projection_contract.py)."""
    digest = _Digest()
    for saga_id, data in stored:
        digest.add(saga_id, data)
    return digest.result()


class _Digest:
    def __init__(self) -> None:
        self._sha = hashlib.sha256()
        self.count = 0

    def add(self, saga_id: str, data: bytes) -> None:
        self._sha.update(saga_id.encode())
        self._sha.update(b"\x00")
        self._sha.update(data)
        self.count += 1

    def result(self) -> tuple[str, int]:
        return self._sha.hexdigest(), self.count


def _canonical(states: Iterable[SagaState]) -> Iterator[tuple[str, bytes]]:
    for state in sorted(states, key=lambda s: s.saga_id):
        yield state.saga_id, state.to_bytes()


def _checksums_by_partition(stored: Iterable[tuple[str, bytes]],
                            partition_of: Callable[[str], int]
                            ) -> dict[int, tuple[str, int]]:
    digests: dict[int, _Digest] = {}
    for saga_id, data in stored:
        partition = partition_of(saga_id)
        digest = digests.get(partition)
        if digest is None:
            digest = digests[partition] = _Digest()
        digest.add(saga_id, data)
    return {p: digest.result() for p, digest in sorted(digests.items())}
