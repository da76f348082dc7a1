"""Bringing local state up to date with Kafka: on every assignment (before any input is
processed), when a store was wiped, and for `saga rebuild`.

The projection catches up from its stored journal offsets to the end of saga.journal,
folding each entry into its saga's state; the timer index from its stored offsets to the
end of saga.timers. Both write data and offsets in one batch, so a crash mid-way resumes
from where the last batch ended.

A whole rebuild (`saga rebuild`) of a long journal folds in several processes, each a
share of the partitions into a projection of its own, written out as an SST file that
the projection takes in whole: a saga's entries all live in its partition, so the shares
never meet. Decoding and
folding hold the GIL, so threads would not help.
"""

from __future__ import annotations

import logging
import os
import pickle
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException

from saga.config import KafkaConnection, Settings
from saga.engine import events as ev
from saga.engine.state import SagaState, apply, check_sequence
from saga.errors import ConfigError, RebuildFailed, SagaError
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

#: A journal shorter than this is rebuilt in one process when the worker count is left
#: to the machine: starting a worker (a fresh interpreter importing kafka-saga) takes
#: about a second here, what folding some 10,000 entries takes.
PARALLEL_FROM_RECORDS = 50_000


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


def catch_up_projection(projection: RocksProjection, settings: Settings, topic: str,
                         partitions: Sequence[int], codec: RecordCodec) -> tuple[int, int]:
    """``catch_up``, with the partitions the projection has never read (a new instance,
    a wiped store) folded in worker processes when SAGA_REBUILD_WORKERS and the
    journal's length call for them, as `saga rebuild` folds; returns (entries applied,
    worker processes used, 1 when none)."""
    fresh = [p for p in partitions if projection.journal_offset(p) is None]
    workers = (rebuild_workers(settings, topic, fresh, settings.rebuild_workers)
               if len(fresh) > 1 else 1)
    applied = 0
    remove_stale_shares(projection)
    if workers > 1:
        applied = _catch_up_in_parallel(projection, settings, topic, fresh, workers, None)
        partitions = [p for p in partitions if p not in fresh]
    return applied + catch_up(projection, settings.kafka, topic, partitions, codec), workers


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


def rebuild_projection(settings: Settings, into: Path, *, workers: int | None = None,
                       on_progress: Progress | None = None) -> dict[str, Any]:
    """Replay the whole journal into a fresh projection at ``into``: its checksum, saga
    and event counts, the processes that folded it, and per partition its checksum and
    journal offset. ``workers`` (default SAGA_REBUILD_WORKERS; 0: one per CPU core for
    a journal of PARALLEL_FROM_RECORDS records or more) is capped by the partitions.
    ``into`` must be new or empty: folded into anything else, the result would not be a
    fresh fold (ConfigError)."""
    if into.exists() and (not into.is_dir() or any(into.iterdir())):
        raise ConfigError(f"{into} already holds files: a rebuild folds the journal into a "
                          "fresh projection",
                          hint="name a new or empty folder, or remove that one (a rebuild "
                          "that was stopped leaves one behind)")
    topic = settings.topic("saga.journal")
    projection = RocksProjection(into)
    try:
        remove_stale_shares(projection)
        partitions = clients.partitions_of(settings.kafka, topic)
        count = rebuild_workers(settings, topic, partitions,
                                settings.rebuild_workers if workers is None else workers)
        if count > 1:
            applied = _catch_up_in_parallel(projection, settings, topic, partitions, count,
                                            on_progress)
        else:
            applied = catch_up(projection, settings.kafka, topic, partitions,
                               RecordCodec.for_settings(settings), on_progress=on_progress)
        digest, sagas = checksum_stored(projection.stored_states())
        return {"checksum": digest, "sagas": sagas, "events": applied, "workers": count,
                "partitions": partition_report(
                    projection, lambda saga_id: partition_of(saga_id, len(partitions)))}
    finally:
        projection.close()


def rebuild_workers(settings: Settings, topic: str, partitions: Sequence[int],
                    asked: int) -> int:
    """How many processes fold the journal: ``asked``, or for 0 one per CPU core once
    the journal is long enough to repay starting them; never more than the partitions."""
    if asked < 0:
        raise ValueError(f"workers must be >= 0, got {asked}")
    if asked == 0:
        if backlog(settings.kafka, topic, dict.fromkeys(partitions)) < PARALLEL_FROM_RECORDS:
            return 1
        asked = len(os.sched_getaffinity(0))
    return max(1, min(asked, len(partitions)))


def _catch_up_in_parallel(projection: RocksProjection, settings: Settings, topic: str,
                          partitions: Sequence[int], workers: int,
                          on_progress: Progress | None) -> int:
    """Fold ``partitions`` in ``workers`` processes, each into a projection of its own
    beside ``projection``, then copy theirs into it; returns the entries applied. A
    worker's error is raised here once every worker is stopped."""
    shares = [list(partitions[n::workers]) for n in range(workers)]
    total = backlog(settings.kafka, topic, dict.fromkeys(partitions)) if on_progress else 0
    outcomes: queue.Queue[tuple[int, int | SagaError]] = queue.Queue()
    with tempfile.TemporaryDirectory(prefix=_scratch_prefix(projection.path),
                                     dir=projection.path.parent) as scratch:
        folds = [_ShareFold(slot, settings, topic, Path(scratch) / f"share-{slot}", share,
                            outcomes) for slot, share in enumerate(shares)]
        applied: dict[int, int] = {}
        shown = -1  # the records read last reported: said again, a line says nothing new
        try:
            while len(applied) < workers:
                try:
                    slot, outcome = outcomes.get(timeout=0.5)
                except queue.Empty:
                    pass
                else:
                    if isinstance(outcome, SagaError):
                        raise outcome
                    applied[slot] = outcome
                read = min(sum(fold.read for fold in folds), total)
                if on_progress is not None and read != shown:
                    shown = read
                    on_progress(read, total)
        finally:
            for fold in folds:
                fold.stop()
        for fold in folds:
            if fold.exported.exists():  # no file: the share held nothing
                projection.ingest(fold.exported)
    if on_progress is not None and shown != total:
        on_progress(total, total)
    return sum(applied.values())


def _scratch_prefix(projection: Path) -> str:
    """The shares of a parallel fold are in a folder beside the projection, named after
    it: ``.<projection>.rebuild-<random>``."""
    return f".{projection.name}.rebuild-"


def remove_stale_shares(projection: RocksProjection) -> list[Path]:
    """Remove the shares a parallel fold into ``projection`` left when its process was
    killed mid-way; the folders removed. Only this projection's: while it is open its
    lock is held, so no live fold is using them, and a fold into another projection of
    the same folder names its shares after that one."""
    prefix = _scratch_prefix(projection.path)
    stale = [path for path in projection.path.parent.glob(prefix + "*")
             if _RANDOM_SUFFIX.fullmatch(path.name[len(prefix):])]
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return stale


#: What tempfile appends to a prefix (its _RandomNameSequence: 8 of [a-z0-9_]).
_RANDOM_SUFFIX = re.compile(r"[a-z0-9_]{8}")
#: A worker is a fresh interpreter that imports only this module (multiprocessing's
#: spawn would import the caller's main module again: the whole CLI, a second more).
_WORKER = "from saga.coordinator.recovery import fold_share_worker; fold_share_worker()"


def _exported(share: Path) -> Path:
    """Where a worker leaves what it folded into ``share``, as an SST file
    (RocksStore.export) for the projection to ingest."""
    return share.with_suffix(".sst")


class _ShareFold:
    """One worker process folding a share of the partitions into a projection of its
    own. Its orders go in on stdin and its reports come back on stdout, pickled: how
    many records it has read, then the entries it applied or its error."""

    def __init__(self, slot: int, settings: Settings, topic: str, into: Path,
                 partitions: list[int],
                 outcomes: queue.Queue[tuple[int, int | SagaError]]) -> None:
        self.slot, self.partitions = slot, partitions
        self.exported = _exported(into)
        self.read = 0
        self._outcomes = outcomes
        self._process = subprocess.Popen([sys.executable, "-c", _WORKER],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self._process.stdin is not None
        with self._process.stdin as orders:
            pickle.dump((settings, topic, into, partitions), orders)
        self._listener = threading.Thread(target=self._listen, daemon=True,
                                          name=f"rebuild-share-{slot}")
        self._listener.start()

    def _listen(self) -> None:
        assert self._process.stdout is not None
        try:
            while True:
                kind, value = pickle.load(self._process.stdout)
                if kind != "read":
                    self._outcomes.put((self.slot, value))
                    return
                self.read = value
        except (EOFError, pickle.UnpicklingError):
            code = self._process.wait()
            self._outcomes.put((self.slot, RebuildFailed(
                f"the worker folding partitions {self.partitions} ended (exit code {code}) "
                "without an answer")))

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
        self._process.wait()
        self._listener.join()
        assert self._process.stdout is not None
        self._process.stdout.close()


def fold_share_worker() -> None:
    """A rebuild worker's main: fold the partitions its orders name into a projection of
    its own. Its stdout carries only its reports (anything else printed goes to stderr)."""
    reports = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    settings, topic, into, partitions = pickle.load(sys.stdin.buffer)
    parent = os.getppid()
    reported = 0

    def report(kind: str, value: object) -> None:
        pickle.dump((kind, value), reports)
        reports.flush()

    def on_progress(seen: int, _total: int) -> None:
        nonlocal reported
        if seen - reported >= 1000:
            if os.getppid() != parent:  # the parent was killed: nobody wants the share
                raise SystemExit(3)
            reported = seen
            report("read", seen)

    outcome: int | SagaError
    try:
        share = RocksProjection(into)
        try:
            outcome = catch_up(share, settings.kafka, topic, partitions,
                               RecordCodec.for_settings(settings), on_progress=on_progress)
            # Written here, in parallel, the parent only moves the file in.
            share.store.export(_exported(into))
        finally:
            share.close()
    except SagaError as exc:
        outcome = exc
    except KafkaException as exc:
        outcome = clients.as_saga_error(exc)
    try:
        pickle.dumps(outcome)
    except (pickle.PicklingError, TypeError, AttributeError):
        outcome = RebuildFailed(f"the worker folding partitions {partitions} failed: {outcome}")
    report("done", outcome)


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
