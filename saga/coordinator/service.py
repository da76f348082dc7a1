"""The coordinator loop: consume saga.inbox, decide, produce, commit, project.

Each batch is one Kafka transaction holding the journal entries, the commands derived
from them, any dead letters and the consumed inbox offsets (KIP-447: the offsets are
sent with the consumer's group metadata, so a fenced member cannot commit). Only after
the commit is the RocksDB projection written, with the journal offsets in the same
WriteBatch; on every assignment the projection first catches up from those offsets to
the end of saga.journal.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition

from saga.config import Settings
from saga.engine import events as ev
from saga.engine.decider import Engine
from saga.engine.inputs import FireTimer
from saga.engine.state import SagaState
from saga.engine.workflow import WorkflowRegistry
from saga.errors import CodecError, KafkaUnavailable, SagaError, TopicMismatch
from saga.kafka import clients
from saga.kafka.journal import catch_up
from saga.kafka.messages import Messages, dead_letter_headers
from saga.kafka.timers import TIMER_ACTION_HEADER, catch_up_timers
from saga.kafka.topics import (
    admin_client,
    check_topics,
    create_topics,
    load_specs,
    service_topic_spec,
)
from saga.state.rocks import RocksProjection
from saga.state.timers import PendingTimer, RocksTimerIndex

log = logging.getLogger("saga.coordinator")
_T = TypeVar("_T")


class CoordinatorFenced(SagaError):
    """A newer instance with this instance id (or a fatal broker error) ended this one.

    Nothing it did after the fencing point is committed: its open transaction is
    aborted by the newer instance's init_transactions."""


@dataclass(frozen=True)
class CoordinatorConfig:
    """Tuning of one coordinator instance (flags of `saga coordinator run`)."""

    #: Stable per instance: it names the transactional.id (fencing) and the projection.
    instance_id: str = field(default_factory=lambda: socket.gethostname())
    #: Inbox records per transaction.
    batch_size: int = 500
    #: Longest wait for a batch to fill: bounds the latency a quiet moment adds.
    max_wait_ms: int = 20
    #: Live workflow coroutines kept in memory; an evicted saga replays from its state.
    cache_size: int = 10_000
    #: Most timers fired per loop turn: a storm of due timers cannot starve the inbox.
    timer_fire_limit: int = 1000
    #: Seconds between progress lines on stderr; 0 for none.
    report_every_s: float = 10.0
    #: How long start-up waits for a cluster that answers with transient errors (a
    #: broker restarting, a controller election) before giving up.
    startup_wait_s: float = 120.0


@dataclass
class Stats:
    messages: int = 0
    transactions: int = 0
    entries: int = 0
    commands: int = 0
    dead_letters: int = 0
    aborts: int = 0
    timers_fired: int = 0


class Coordinator:
    def __init__(self, settings: Settings, registry: WorkflowRegistry,
                 config: CoordinatorConfig | None = None, *,
                 progress: Callable[[str], None] | None = None) -> None:
        self.settings = settings
        self.config = config or CoordinatorConfig()
        self.bootstrap = settings.bootstrap_servers
        self.inbox = settings.topic("saga.inbox")
        self.journal = settings.topic("saga.journal")
        self.dlq = settings.topic("saga.dlq")
        self.timers_topic = settings.topic("saga.timers")
        self.messages = Messages(max_payload_bytes=settings.max_payload_bytes)
        self.engine = Engine(registry, cache_size=self.config.cache_size)
        self.stats = Stats()
        self._say = progress or (lambda line: log.info(line))
        self._stop = threading.Event()
        self._owned: set[int] = set()
        self._known_topics: set[str] = set()
        self._delivered: dict[str, dict[int, int]] = {}
        self._timer_changes = _TimerChanges()
        # Write-through cache of committed states: the projection is only written here,
        # so a hit saves a RocksDB read and a JSON parse per input.
        self._states: OrderedDict[str, SagaState] = OrderedDict()
        self._abandoned: list[Any] = []
        home = settings.state_dir / "coordinator" / self.config.instance_id
        self.projection_path = home / "projection"
        self.timers_path = home / "timers"
        self.projection: RocksProjection | None = None
        self.timers: RocksTimerIndex | None = None

    # ---- lifecycle -----------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()

    def run(self, *, until: Callable[[], bool] | None = None) -> Stats:
        """Process until stop() (or ``until()`` is true); returns the counters."""
        self._while_kafka_recovers(self._check_topics, "checking the topics")
        self.projection, wiped = RocksProjection.open_or_rebuild(self.projection_path)
        if wiped:
            self._say(f"projection at {self.projection_path} was unreadable: rebuilding it "
                      "from saga.journal")
        self.timers, wiped = RocksTimerIndex.open_or_rebuild(self.timers_path)
        if wiped:
            self._say(f"timer index at {self.timers_path} was unreadable: rebuilding it "
                      "from saga.timers")
        self.producer = self._while_kafka_recovers(self._transactional_producer,
                                                   "starting the transactional producer")
        self.consumer = self._subscribed_consumer()
        self._say(f"coordinator {self.config.instance_id} consuming {self.inbox}")
        last_report = time.monotonic()
        try:
            while not self._stop.is_set() and not (until and until()):
                batch = self.consumer.consume(self.config.batch_size,
                                              self.config.max_wait_ms / 1000)
                due = self.timers.due(self._owned, int(time.time() * 1000),
                                      self.config.timer_fire_limit) if self._owned else []
                if batch or due:
                    self._process(batch, due)
                if self.config.report_every_s and \
                        time.monotonic() - last_report >= self.config.report_every_s:
                    last_report = time.monotonic()
                    self._say(f"processed {self.stats.messages} inputs in "
                              f"{self.stats.transactions} transactions; partitions "
                              f"{sorted(self._owned)}")
        finally:
            # No flush: every record is produced inside a transaction that has been
            # committed or aborted by now, and a fenced producer would only raise.
            self.consumer.close()
            self.projection.close()
            self.timers.close()
            self.engine.forget()
        return self.stats

    def _while_kafka_recovers(self, step: Callable[[], _T], what: str) -> _T:
        """``step()``, tried again while the cluster answers with transient errors."""
        deadline = time.monotonic() + self.config.startup_wait_s
        while True:
            try:
                return step()
            except (KafkaUnavailable, KafkaException) as exc:
                transient = isinstance(exc, KafkaUnavailable) or clients.is_transient(exc)
                if not transient or time.monotonic() >= deadline:
                    raise
                self._say(f"{what}: Kafka is not ready ({exc}); trying again")
                time.sleep(2)

    def _transactional_producer(self) -> Any:
        producer = clients.producer(
            self.bootstrap, transactional_id=f"{self.settings.topic_prefix}saga-coordinator-"
            f"{self.config.instance_id}")
        # Fences any earlier producer with this id and aborts its open transaction.
        producer.init_transactions(60)
        return producer

    def _subscribed_consumer(self) -> Any:
        prefix = self.settings.topic_prefix
        consumer = clients.consumer(
            self.bootstrap, f"{prefix}saga-coordinator",
            **{"partition.assignment.strategy": "cooperative-sticky",
               # Dynamic membership on purpose: with static members (group.instance.id)
               # a leader killed between the two rounds of a cooperative rebalance
               # rejoins without a rebalance, and the partitions it was handing over stay
               # assigned to nobody. A dead instance's partitions move after this:
               "session.timeout.ms": 10000,
               # Members learn of a rebalance from a heartbeat reply: a shorter interval
               # than the default 3 s shortens the pause of moving partitions.
               "heartbeat.interval.ms": 1000,
               "max.poll.interval.ms": 300000})
        consumer.subscribe([self.inbox], on_assign=self._on_assign,
                           on_revoke=self._on_revoke, on_lost=self._on_lost)
        return consumer

    def _check_topics(self) -> None:
        admin = admin_client(self.bootstrap)
        specs = load_specs(self.settings)
        problems = [p for p in check_topics(admin, specs)
                    if "co-partitioning" in p or "is missing" in p]
        if problems:
            raise TopicMismatch(problems)
        self._known_topics = {s.name for s in specs}

    # ---- rebalance -----------------------------------------------------------------
    def _on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        assert self.projection is not None
        assert self.timers is not None
        numbers = sorted(tp.partition for tp in partitions)
        began = time.monotonic()
        applied = catch_up(self.projection, self.bootstrap, self.journal, numbers,
                           self.messages)
        timer_records = catch_up_timers(self.timers, self.bootstrap, self.timers_topic,
                                        numbers, self.messages)
        self._owned.update(numbers)
        self._say(f"assigned partitions {numbers}; caught up {applied} journal entries and "
                  f"{timer_records} timer records in {time.monotonic() - began:.2f}s")

    def _on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        # Between batches no transaction is open, so there is nothing to commit here;
        # live coroutines of sagas that move away must not be reused if they come back.
        self._owned.difference_update(tp.partition for tp in partitions)
        self.engine.forget()
        self._states.clear()
        self._say(f"revoked partitions {sorted(tp.partition for tp in partitions)}")

    def _on_lost(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        self._on_revoke(consumer, partitions)

    # ---- one batch -----------------------------------------------------------------
    def _process(self, batch: list[Message], due: list[PendingTimer]) -> None:
        assert self.projection is not None
        assert self.timers is not None
        now_ms = int(time.time() * 1000)
        states: dict[str, SagaState] = {}
        entries: list[ev.Entry] = []
        consumed: dict[int, int] = {}
        first: dict[int, int] = {}
        self._delivered = {self.journal: {}, self.timers_topic: {}}
        self._timer_changes = _TimerChanges()
        self.producer.begin_transaction()
        try:
            for timer in due:
                self._fire(timer)
            for message in batch:
                error = message.error()
                if error is not None:
                    if error.fatal() or error.code() == KafkaError._FATAL:
                        raise KafkaException(error)
                    log.warning("consume error: %s", error)
                    continue
                _, partition, offset = clients.where(message)
                first.setdefault(partition, offset)
                consumed[partition] = offset + 1
                self._handle(message, partition, offset, now_ms, states, entries)
            if not consumed and not due:
                self.producer.abort_transaction(30)
                return
            self._flush()
            if consumed:
                self._send_offsets(consumed)
            self.producer.commit_transaction(60)
        except KafkaException as exc:
            self._recover(exc, states, first)
            return
        except clients.ClientStuck as exc:
            self._replace_producer(exc, states, first)
            return
        self.projection.commit(states, entries, self._delivered[self.journal])
        self.timers.apply(self._timer_changes.scheduled.values(), self._timer_changes.removed,
                          self._delivered[self.timers_topic])
        self._remember(states)
        self.stats.timers_fired += len(due)
        self.stats.messages += len(batch)
        self.stats.transactions += 1
        self.stats.entries += len(entries)

    def _flush(self) -> None:
        try:
            self.producer.flush(30)
        except SystemError as exc:
            # A fatal error (e.g. fenced by a newer instance) that strikes while flush
            # serves delivery callbacks reaches Python as a SystemError caused by it.
            if isinstance(exc.__cause__, KafkaException):
                raise exc.__cause__ from exc
            raise

    def _send_offsets(self, consumed: dict[int, int]) -> None:
        offsets = [TopicPartition(self.inbox, p, o) for p, o in consumed.items()]
        metadata = self.consumer.consumer_group_metadata()
        producer = self.producer
        # Its own timeout does not hold when the group coordinator broker went away
        # (librdkafka #5456, #5511): the call can block for good. It takes milliseconds
        # when healthy; a timeout is abortable and the batch is read again.
        clients.call_with_deadline(
            lambda: producer.send_offsets_to_transaction(offsets, metadata, 10),
            15, "send_offsets_to_transaction")

    def _handle(self, message: Message, partition: int, offset: int, now_ms: int,
                states: dict[str, SagaState], entries: list[ev.Entry]) -> None:
        assert self.projection is not None
        try:
            inbox = self.messages.decode_inbox(message.value())
        except CodecError as exc:
            self._dead_letter(message, "undecodable", f"{type(exc).__name__}: {exc}")
            return
        key = message.key()
        if key is not None and key != inbox.saga_id.encode():
            self._dead_letter(message, "key_mismatch",
                              f"record key {key!r} is not the saga id {inbox.saga_id!r}")
            return
        saga_id = inbox.saga_id
        state = states.get(saga_id) or self._states.get(saga_id) \
            or self.projection.get(saga_id)
        try:
            decision = self.engine.decide(saga_id, state, inbox.value, now_ms)
        except SagaError as exc:  # an impossible history; never crash the coordinator
            self.engine.forget([saga_id])
            self._dead_letter(message, "decision_failed", f"{type(exc).__name__}: {exc}")
            return
        if decision.rejection is not None:
            self._dead_letter(message, decision.rejection.reason, decision.rejection.detail)
            return
        if not decision.entries or decision.state is None:
            return
        cause = f"{self.inbox}/{partition}/{offset}"
        for entry in decision.entries:
            self.producer.produce(self.journal, self.messages.encode_entry(entry, cause),
                                  saga_id.encode(), partition=partition,
                                  headers=[("saga.event", entry.event.type_name.encode())],
                                  on_delivery=self._on_delivery)
            event = entry.event
            if isinstance(event, ev.CommandIssued):
                self._send_command(decision.state.saga_type, entry)
            elif isinstance(event, ev.TimerScheduled):
                self.producer.produce(self.timers_topic,
                                      self.messages.encode_timer(saga_id, event),
                                      event.timer_id.encode(), partition=partition,
                                      headers=[(TIMER_ACTION_HEADER, b"SCHEDULE")],
                                      on_delivery=self._on_delivery)
                self._timer_changes.schedule(PendingTimer(partition, event.timer_id, saga_id,
                                                          event.due_ms))
            elif isinstance(event, ev.TimerCancelled):
                self._end_timer(partition, event.timer_id, b"CANCEL")
        states[saga_id] = decision.state
        entries.extend(decision.entries)

    def _remember(self, states: dict[str, SagaState]) -> None:
        for saga_id, state in states.items():
            self._states[saga_id] = state
            self._states.move_to_end(saga_id)
        while len(self._states) > self.config.cache_size:
            self._states.popitem(last=False)

    def _send_command(self, saga_type: str, entry: ev.Entry) -> None:
        event = entry.event
        assert isinstance(event, ev.CommandIssued)
        topic = self.settings.topic(f"{event.service}.commands")
        if topic not in self._known_topics:
            self._create_command_topic(event.service)
        self.producer.produce(topic, self.messages.encode_command(
            saga_type, event, self.inbox, entry.at_ms), entry.saga_id.encode(),
            headers=command_headers(event, entry.saga_id))
        self.stats.commands += 1

    def _create_command_topic(self, service: str) -> None:
        # Creating beats failing: a produce to a missing topic would stall the
        # transaction until it times out, and the saga's step would never be sent.
        spec = service_topic_spec(self.settings, service)
        create_topics(admin_client(self.bootstrap), [spec])
        self._known_topics.add(spec.name)
        self._say(f"created {spec.name} for a service no topic spec names")

    def _dead_letter(self, message: Message, reason: str, detail: str) -> None:
        topic, partition, offset = clients.where(message)
        self.producer.produce(
            self.dlq,
            self.messages.encode_dead_letter(topic=topic, partition=partition, offset=offset,
                                             key=message.key(), value=message.value(),
                                             reason=reason, detail=detail,
                                             component="coordinator"),
            message.key(),
            headers=dead_letter_headers(reason, detail, "coordinator", topic, partition,
                                        offset))
        self.stats.dead_letters += 1
        log.warning("dead-lettered %s/%s/%s: %s (%s)", topic, partition, offset, reason, detail)

    def _fire(self, timer: PendingTimer) -> None:
        """Wake the saga: TimerFired into its inbox partition, a tombstone for the timer."""
        value = self.messages.encode_inbox(timer.saga_id, FireTimer(timer.timer_id,
                                                                    timer.due_ms),
                                           message_id=f"timer:{timer.timer_id}")
        self.producer.produce(self.inbox, value, timer.saga_id.encode(),
                              partition=timer.partition)
        self._end_timer(timer.partition, timer.timer_id, b"FIRED")

    def _end_timer(self, partition: int, timer_id: str, action: bytes) -> None:
        self.producer.produce(self.timers_topic, None, timer_id.encode(), partition=partition,
                              headers=[(TIMER_ACTION_HEADER, action)],
                              on_delivery=self._on_delivery)
        self._timer_changes.remove(timer_id)

    def _on_delivery(self, error: KafkaError | None, message: Message) -> None:
        if error is None:
            topic, partition, offset = clients.where(message)
            offsets = self._delivered[topic]
            offsets[partition] = max(offsets.get(partition, 0), offset + 1)

    def _recover(self, exc: KafkaException, states: dict[str, SagaState],
                 first: dict[int, int]) -> None:
        """Abort the batch and read it again; a fenced or fatal error stops the process."""
        error: KafkaError = exc.args[0]
        self._drop_batch(states)
        if error.fatal() or error.code() == KafkaError._FATAL or not (
                error.txn_requires_abort() or error.retriable()):
            raise CoordinatorFenced(
                f"coordinator {self.config.instance_id} cannot go on: {error.str()}",
                hint="another instance with the same --instance-id took over (it fenced "
                "this one); give every instance its own id") from exc
        log.warning("transaction aborted (%s); re-reading the batch", error)
        self.producer.abort_transaction(30)
        self._rewind(first)

    def _replace_producer(self, exc: clients.ClientStuck, states: dict[str, SagaState],
                          first: dict[int, int]) -> None:
        """Give up a producer wedged inside librdkafka and read the batch again.

        The new producer's init_transactions fences the old one, so whatever the old one
        still holds open is aborted by the broker and never becomes visible."""
        self._drop_batch(states)
        self._say(f"{exc}; replacing the transactional producer and re-reading the batch")
        self._abandoned.append(self.producer)  # its blocked call still holds it
        self.producer = self._transactional_producer()
        self._rewind(first)

    def _drop_batch(self, states: dict[str, SagaState]) -> None:
        """Forget what an aborted batch decided: its coroutines and cached states."""
        self.engine.forget(states)
        self._states.clear()
        self.stats.aborts += 1

    def _rewind(self, first: dict[int, int]) -> None:
        for partition, offset in first.items():
            self.consumer.seek(TopicPartition(self.inbox, partition, offset))


def command_headers(event: ev.CommandIssued, saga_id: str
                    ) -> list[tuple[str, str | bytes | None]]:
    """What any Kafka client can audit without Avro: which command, which decision."""
    return [("saga.command", f"{event.service}.{event.name}".encode()),
            ("saga.command_id", event.command_id.encode()),
            ("saga.kind", event.kind.encode()), ("saga.saga_id", saga_id.encode())]


@dataclass
class _TimerChanges:
    """What one transaction does to the timer index, applied after it commits."""

    scheduled: dict[str, PendingTimer] = field(default_factory=dict)
    removed: set[str] = field(default_factory=set)

    def schedule(self, timer: PendingTimer) -> None:
        self.removed.discard(timer.timer_id)
        self.scheduled[timer.timer_id] = timer

    def remove(self, timer_id: str) -> None:
        self.scheduled.pop(timer_id, None)
        self.removed.add(timer_id)


def projection_path(settings: Settings, instance_id: str) -> Path:
    return settings.state_dir / "coordinator" / instance_id / "projection"
