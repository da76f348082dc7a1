"""Feeding the visibility index: a thread that tails saga.journal and saga.dlq
read_committed (every partition: each server replica reads everything and needs no
consumer group) and folds them into the index, a batch at a time, with the offsets it
read to in the same write.

It starts from the offsets the index stored (a restart resumes, a lost index replays
from the beginning), is *ready* once it has read every partition to the end it had when
it started, and tells the API which sagas changed so long polls can answer at once.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, Message, TopicPartition

from saga.config import Settings
from saga.engine import events as ev
from saga.engine.state import SagaState, apply, check_sequence
from saga.errors import BodyUnavailable, CodecError, SagaError
from saga.kafka import clients
from saga.kafka.dead_letters import read_letter, to_json
from saga.kafka.records import RecordCodec
from saga.server.recent import RecentActivity
from saga.store.visibility import SagaChange, VisibilityIndex
from saga.telemetry import metrics

log = logging.getLogger("saga.server")
Changed = Callable[[set[str]], None]


@dataclass
class FeedStatus:
    ready: bool = False
    #: Records behind each partition's end, as of the last look (journal and dlq).
    lag: dict[str, int] = field(default_factory=dict)
    failed: str | None = None
    entries: int = 0
    letters: int = 0


class IndexFeed:
    def __init__(self, settings: Settings, index: VisibilityIndex, *,
                 on_change: Changed | None = None, flush_every_s: float = 0.05,
                 cache_size: int = 50_000) -> None:
        self.settings = settings
        self.index = index
        self.recent = RecentActivity()
        self.status = FeedStatus()
        self._on_change = on_change or (lambda ids: None)
        self._flush_every_s = flush_every_s
        self._codec = RecordCodec.for_settings(settings)
        self._journal = settings.topic("saga.journal")
        self._dlq = settings.topic("saga.dlq")
        self._states: OrderedDict[str, SagaState] = OrderedDict()
        self._cache_size = cache_size
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="index-feed", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        try:
            self._tail()
        except (SagaError, KafkaException, OSError) as exc:
            self.status.failed = f"{type(exc).__name__}: {exc}"
            log.error("the index feed stopped: %s", self.status.failed)
        except Exception as exc:
            self.status.failed = f"{type(exc).__name__}: {exc}"
            log.exception("the index feed stopped")

    def _tail(self) -> None:
        kafka = self.settings.kafka
        reader = clients.consumer(kafka, f"saga-server-{uuid.uuid4().hex}",
                                  **{"enable.partition.eof": True})
        stored = {self._journal: self.index.journal_offsets(),
                  self._dlq: self.index.dlq_offsets()}
        assignment = [TopicPartition(topic, p, offsets.get(p, OFFSET_BEGINNING))
                      for topic, offsets in stored.items()
                      for p in clients.partitions_of(kafka, topic)]
        clients.assign(reader, assignment)
        behind = {(tp.topic, tp.partition) for tp in assignment}
        batch = _Batch()
        last_flush = last_lag = time.monotonic()
        try:
            while not self._stop.is_set():
                for message in reader.consume(500, 0.05):
                    error = message.error()
                    if error is None:
                        self._take(message, batch)
                        continue
                    if error.code() == KafkaError._PARTITION_EOF:
                        # past the transaction markers: the position to resume from
                        topic, partition, offset = clients.where(message)
                        offsets = batch.offsets(topic)
                        offsets[partition] = max(offsets.get(partition, 0), offset)
                        behind.discard((topic, partition))
                    elif not clients.is_transient(error):
                        raise clients.as_saga_error(KafkaException(error))
                now = time.monotonic()
                if batch and now - last_flush >= self._flush_every_s:
                    self._flush(batch)
                    batch = _Batch()
                    last_flush = now
                if not behind and not batch:
                    self.status.ready = True
                if now - last_lag >= 2.0:
                    last_lag = now
                    self.status.lag = self._lag(reader, assignment)
        finally:
            if batch:
                self._flush(batch)
            reader.close()

    def _take(self, message: Message, batch: _Batch) -> None:
        topic, partition, offset = clients.where(message)
        batch.offsets(topic)[partition] = offset + 1
        if topic == self._dlq:
            letter = read_letter(self._codec, clients.Record(
                partition, offset, message.key(), message.value(),
                clients.headers_of(message)))
            batch.letters.append(to_json(letter))
            return
        try:
            entry, cause = self._codec.decode_journal(message.value())
        except BodyUnavailable:
            # Passing over would leave sagas out of the index for good: stop, say why.
            raise
        except CodecError as exc:
            log.warning("%s/%d/%d is not a journal entry, passed over: %s", topic, partition,
                        offset, exc)
            return
        self._fold(entry, cause, batch, f"{topic}/{partition}/{offset}")

    def _fold(self, entry: ev.Entry, cause: str | None, batch: _Batch, where: str) -> None:
        saga_id = entry.saga_id
        pending = batch.changes.get(saga_id)
        if pending is not None:
            state = pending.after
        else:
            cached = self._states.get(saga_id)
            before = cached if cached is not None else self.index.state(saga_id)
            state = before if before is not None else SagaState(saga_id)
            pending = _Pending(before, state)
            batch.changes[saga_id] = pending
        check_sequence(state, entry, where)
        pending.after = apply(state, entry)
        pending.entries.append(entry)
        self.recent.observe(entry, pending.after)
        if isinstance(entry.event, ev.SagaStarted):
            pending.started_by = cause

    def _flush(self, batch: _Batch) -> None:
        self.index.apply(
            [SagaChange(p.before, p.after, p.entries, p.started_by)
             for p in batch.changes.values()],
            batch.letters, batch.offsets(self._journal), batch.offsets(self._dlq))
        for saga_id, pending in batch.changes.items():
            self._states[saga_id] = pending.after
            self._states.move_to_end(saga_id)
        while len(self._states) > self._cache_size:
            self._states.popitem(last=False)
        indexed = sum(len(p.entries) for p in batch.changes.values())
        self.status.entries += indexed
        metrics.INDEXED.inc(indexed)
        self.status.letters += len(batch.letters)
        changed = set(batch.changes)
        if changed or batch.letters:
            self._on_change(changed)

    def _lag(self, reader: Any, assignment: list[TopicPartition]) -> dict[str, int]:
        lag: dict[str, int] = {}
        stored = {self._journal: self.index.journal_offsets(),
                  self._dlq: self.index.dlq_offsets()}
        for tp in assignment:
            # cached: the ends the fetches reported, no request (one per partition would
            # hold this thread, which indexes, for a round trip each)
            _, high = reader.get_watermark_offsets(tp, cached=True)
            if high < 0:
                continue  # nothing fetched from it yet
            name = "journal" if tp.topic == self._journal else "dlq"
            lag[name] = lag.get(name, 0) + max(0, high - stored[tp.topic].get(tp.partition, 0))
        return lag


@dataclass
class _Pending:
    before: SagaState | None
    after: SagaState
    entries: list[ev.Entry] = field(default_factory=list)
    started_by: str | None = None


class _Batch:
    def __init__(self) -> None:
        self.changes: dict[str, _Pending] = {}
        self.letters: list[dict[str, object]] = []
        self._offsets: dict[str, dict[int, int]] = {}

    def offsets(self, topic: str) -> dict[int, int]:
        return self._offsets.setdefault(topic, {})

    def __bool__(self) -> bool:
        return bool(self.changes or self.letters or any(self._offsets.values()))
