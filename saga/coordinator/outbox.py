"""What one batch writes to Kafka, derived from its decisions: the one place that maps
journal entries (and dead letters and fired timers) to records.

A journal entry becomes its journal record, in the inbox record's partition
(co-partitioning), and each of its effects (saga/engine/effects.py says which, for
saga.testing too) a record: a ``CommandIssued`` a command on ``<service>.commands``;
``TimerScheduled`` and ``TimerCancelled`` a timer request and a tombstone on
``saga.timers``, in the saga's partition; a child's start or cancel and a child's end
notice an input in the other saga's inbox partition; a schedule's state its catalog
entry. The outbox also collects what the local
stores apply once the transaction has committed: the states, the entries, the timer
index changes and the deadline index changes (a step's reply deadline is held in its
state, not on saga.timers: see DeadlineChanges).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from saga.codec.origin import OriginKeys
from saga.config import Settings
from saga.engine import events as ev
from saga.engine.effects import SendCommand, SendToSaga, StartTimer, StopTimer, effects_of
from saga.engine.inputs import FireTimer, Input
from saga.engine.state import SagaState
from saga.errors import CodecError, PayloadTooLarge
from saga.kafka import headers
from saga.kafka.clients import RECORD_LIMIT
from saga.kafka.dead_letters import Source, dead_letter
from saga.kafka.headers import Headers, TimerAction
from saga.kafka.partitioner import partition_of
from saga.kafka.records import RecordCodec
from saga.store.projection import DeadlineChanges
from saga.store.timer_index import PendingTimer
from saga.telemetry import tracing


def _fits(value: bytes) -> bytes:
    if len(value) > RECORD_LIMIT:
        raise PayloadTooLarge(f"a {len(value)}-byte record, over the {RECORD_LIMIT}-byte "
                              "limit of a Kafka record",
                              hint="pass smaller inputs and results (a reference instead "
                              "of the data)")
    return value


@dataclass(frozen=True)
class Topics:
    """The real names (with the prefix) of the topics a coordinator writes."""

    inbox: str
    journal: str
    timers: str
    dlq: str
    schedules: str
    settings: Settings

    @classmethod
    def of(cls, settings: Settings) -> Topics:
        return cls(settings.topic("saga.inbox"), settings.topic("saga.journal"),
                   settings.topic("saga.timers"), settings.topic("saga.dlq"),
                   settings.topic("saga.schedules"), settings)

    def commands(self, service: str) -> str:
        return self.settings.topic(f"{service}.commands")


class OutRecord(NamedTuple):
    """One record of the batch's transaction (a NamedTuple: about twenty are made per
    order saga, and a frozen dataclass's __init__ costs a setattr per field)."""

    topic: str
    key: bytes | None
    value: bytes | None
    partition: int | None
    headers: Headers
    #: (partition, offset) of the inbox record whose processing wrote it; None for a
    #: fired timer's. A record Kafka refuses is traced back to its input this way.
    input: tuple[int, int] | None = None


@dataclass
class TimerChanges:
    """What one transaction does to the timer index, applied after it commits."""

    scheduled: dict[str, PendingTimer] = field(default_factory=dict)
    removed: set[str] = field(default_factory=set)

    def schedule(self, timer: PendingTimer) -> None:
        self.removed.discard(timer.timer_id)
        self.scheduled[timer.timer_id] = timer

    def remove(self, timer_id: str) -> None:
        self.scheduled.pop(timer_id, None)
        self.removed.add(timer_id)


class Outbox:
    def __init__(self, topics: Topics, codec: RecordCodec, component: str,
                 inbox_partitions: int = 1, origin: OriginKeys | None = None) -> None:
        self.topics = topics
        self.codec = codec
        self.component = component
        #: Tags what the coordinator sends itself (saga/codec/origin.py).
        self.origin = origin or OriginKeys()
        #: Where another saga's inputs go (a child's start, a parent's notice): the
        #: partition of its id.
        self.inbox_partitions = inbox_partitions
        self.records: list[OutRecord] = []
        self.states: dict[str, SagaState] = {}
        self.entries: list[ev.Entry] = []
        self.timer_changes = TimerChanges()
        #: Per saga decided in this batch: its partition and its state before the batch
        #: (None: new), to tell which reply deadlines start and stop running.
        self._before: dict[str, tuple[int, SagaState | None]] = {}
        self._deadlines_fired: list[PendingTimer] = []
        #: Services this batch sends commands to (their topics must exist first).
        self.services: set[str] = set()
        self.commands = 0
        self.dead_letters = 0
        self.timers_fired = 0
        self.rerouted_inputs = 0
        #: For the metrics, counted once the batch commits: inputs by kind, decisions by
        #: outcome, dead-letter reasons, the due times of the timers fired.
        self.inputs: Counter[str] = Counter()
        self.outcomes: Counter[str] = Counter()
        self.letter_reasons: list[str] = []
        self.fired_due: list[int] = []
        #: (partition, offset) of the inbox record being processed: what it adds is its.
        self.reading: tuple[int, int] | None = None

    def __bool__(self) -> bool:
        return bool(self.records)

    def decided(self, state: SagaState, entries: list[ev.Entry], partition: int,
                cause: str, before: SagaState | None) -> None:
        """A saga's new entries, decided from one input read from ``partition`` on the
        state ``before``: all of them or, when one cannot be encoded (CodecError), none."""
        mark = self._mark()
        try:
            self._decided(state, entries, partition, cause)
        except CodecError:
            self._rollback(mark)
            raise
        self._before.setdefault(state.saga_id, (partition, before))

    def deadline_changes(self) -> DeadlineChanges:
        """What the batch does to the deadline index: each saga's running deadlines at
        its end against those at its start, and the deadlines it fired."""
        changes = DeadlineChanges()
        for saga_id, (partition, before) in self._before.items():
            changes.track(partition, before, self.states[saga_id])
        for timer in self._deadlines_fired:
            changes.fired(timer)
        return changes

    def _decided(self, state: SagaState, entries: list[ev.Entry], partition: int,
                 cause: str) -> None:
        saga_id = state.saga_id
        key = saga_id.encode()
        for entry in entries:
            self._add(self.topics.journal, key, _fits(self.codec.encode_entry(entry, cause)),
                      partition, headers.journal(entry.event.type_name))
            for effect in effects_of(state, entry):
                if isinstance(effect, SendCommand):
                    self._command(state, entry, effect.event)
                elif isinstance(effect, StartTimer):
                    event = effect.event
                    self._add(self.topics.timers, event.timer_id.encode(),
                              self.codec.encode_timer(saga_id, event), partition,
                              headers.timer(TimerAction.SCHEDULE))
                    self.timer_changes.schedule(PendingTimer(partition, event.timer_id,
                                                             saga_id, event.due_ms))
                elif isinstance(effect, StopTimer):
                    self._end_timer(partition, effect.timer_id, TimerAction.CANCEL)
                elif isinstance(effect, SendToSaga):
                    self._to_saga(effect.saga_id, effect.input, effect.message_id, state)
                else:
                    self._schedule(state, effect.schedule_id, effect.published,
                                   effect.at_ms)
        self.states[saga_id] = state
        self.entries.extend(entries)

    def _mark(self) -> tuple[int, int, set[str], TimerChanges]:
        changes = TimerChanges(dict(self.timer_changes.scheduled),
                               set(self.timer_changes.removed))
        return len(self.records), self.commands, set(self.services), changes

    def _rollback(self, mark: tuple[int, int, set[str], TimerChanges]) -> None:
        records, self.commands, self.services, self.timer_changes = mark
        del self.records[records:]

    def fired(self, timer: PendingTimer) -> None:
        """Wake the saga: TimerFired into its inbox partition, and a tombstone for the
        timer (a reply deadline has none: it leaves the deadline index instead)."""
        value = self.codec.encode_inbox(timer.saga_id, FireTimer(timer.timer_id, timer.due_ms),
                                        message_id=f"timer:{timer.timer_id}")
        self._add(self.topics.inbox, timer.saga_id.encode(), value, timer.partition,
                  self._own(value))
        if timer.deadline:
            self._deadlines_fired.append(timer)
        else:
            self._end_timer(timer.partition, timer.timer_id, TimerAction.FIRED)
        self.timers_fired += 1
        self.fired_due.append(timer.due_ms)

    def rerouted(self, saga_id: str, value: bytes | None, partition: int,
                 record_headers: Sequence[tuple[str, bytes | None]] | None = None) -> None:
        """An inbox record that landed in another partition than its saga's, sent on to
        the right one, keyed by the saga id, with its headers (a trace context)."""
        self._add(self.topics.inbox, saga_id.encode(), value, partition,
                  list(record_headers or []))
        self.rerouted_inputs += 1

    def dead_letter(self, source: Source, reason: str, detail: str) -> None:
        letter = dead_letter(self.codec, source, reason, detail, self.component)
        self._add(self.topics.dlq, letter.key, letter.value, None, letter.headers)
        self.dead_letters += 1
        self.letter_reasons.append(reason)

    def _schedule(self, state: SagaState, schedule_id: str, published: Any, at_ms: int
                  ) -> None:
        """The schedule catalog follows what each schedule saga publishes; the entry
        goes where the schedule's id hashes (a compacted topic keeps the latest)."""
        value = None if published is None else self.codec.encode_schedule(
            schedule_id, state.saga_id, published, at_ms)
        self._add(self.topics.schedules, schedule_id.encode(), value,
                  partition_of(schedule_id, self.inbox_partitions), [])

    def _to_saga(self, saga_id: str, value: Input, message_id: str, sender: SagaState
                 ) -> None:
        """An input for another saga (a child, a parent), in its inbox partition: in the
        same transaction as the decision, so it is sent exactly once."""
        encoded = _fits(self.codec.encode_inbox(saga_id, value, message_id=message_id))
        record_headers = self._own(encoded)
        if tracing.enabled():  # a child's trace hangs under its parent's saga span
            record_headers.append((tracing.TRACEPARENT, tracing.saga_traceparent(
                sender.saga_id, sender.trace).encode()))
        self._add(self.topics.inbox, saga_id.encode(), encoded,
                  partition_of(saga_id, self.inbox_partitions), record_headers)

    def _command(self, state: SagaState, entry: ev.Entry, event: ev.CommandIssued) -> None:
        value = _fits(self.codec.encode_command(state.saga_id, state.saga_type, event,
                                                self.topics.inbox, entry.at_ms))
        record_headers = headers.command(event.service, event.name, event.command_id,
                                         event.kind, state.saga_id)
        if tracing.enabled():  # the step's span, parent of the service's handler span
            record_headers.append((tracing.TRACEPARENT, tracing.step_traceparent(
                state.saga_id, state.trace, event.command_id).encode()))
        self._add(self.topics.commands(event.service), state.saga_id.encode(), value, None,
                  record_headers)
        self.services.add(event.service)
        self.commands += 1

    def _own(self, value: bytes) -> Headers:
        """The headers of an inbox record the coordinator sends itself: its origin tag,
        when it has an origin key."""
        mac = self.origin.tag_own(self.topics.inbox, value)
        return [] if mac is None else [(headers.ORIGIN_MAC, mac)]

    def _end_timer(self, partition: int, timer_id: str, action: TimerAction) -> None:
        self._add(self.topics.timers, timer_id.encode(), None, partition,
                  headers.timer(action))
        self.timer_changes.remove(timer_id)

    def _add(self, topic: str, key: bytes | None, value: bytes | None, partition: int | None,
             record_headers: Headers) -> None:
        self.records.append(OutRecord(topic, key, value, partition, record_headers,
                                      self.reading))
