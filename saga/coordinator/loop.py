"""The coordinator loop: consume saga.inbox, decide, and hand each batch to a Checkpoint.

Start-up checks the topics, opens the local stores (rebuilding what is unreadable) and
the transactional producer. Each turn consumes a batch, takes the due timers, decides
every input into an Outbox (pure: no Kafka call), creates any command topic the batch
needs (outside any transaction), and commits the batch through a Checkpoint. On every
assignment the stores first catch up with the journal and saga.timers (recovery.py).
An abortable error rewinds the batch; a wedged producer is replaced; a fenced or fatal
one stops the process with what to do next.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition

from saga.config import Settings
from saga.coordinator import observe
from saga.coordinator.checkpoint import Checkpoint
from saga.coordinator.config import CoordinatorConfig
from saga.coordinator.outbox import Outbox, Topics
from saga.coordinator.recovery import catch_up, catch_up_timers
from saga.coordinator.state_cache import StateCache
from saga.coordinator.timer_wheel import TimerWheel
from saga.engine import events as ev
from saga.engine.budget import RunBudget
from saga.engine.decider import Decider
from saga.engine.inputs import (
    AbandonSaga,
    CancelSaga,
    CommandReply,
    DeliverSignal,
    FireTimer,
    ResumeSaga,
    StartSaga,
)
from saga.engine.workflow import WorkflowRegistry
from saga.errors import (
    ClaimStoreUnavailable,
    ClientStuck,
    CodecError,
    CoordinatorFenced,
    KafkaUnavailable,
    SagaError,
    TopicMismatch,
)
from saga.kafka import clients
from saga.kafka.caches import open_topic_cache
from saga.kafka.dead_letters import Source
from saga.kafka.partitioner import partition_of
from saga.kafka.records import DeadLetterReason, RecordCodec
from saga.kafka.topics import (
    admin_client,
    check_topics,
    create_topics,
    load_specs,
    service_topic_spec,
    source_of,
)
from saga.layout import StateLayout
from saga.store.projection import RocksProjection
from saga.store.timer_index import PendingTimer, RocksTimerIndex
from saga.telemetry import metrics, tracing
from saga.telemetry.logs import log_context, set_process_context

log = logging.getLogger("saga.coordinator")
#: The kinds of input, as the metrics name them.
_INPUT_KINDS: dict[type, str] = {StartSaga: "start", DeliverSignal: "signal",
                                 CancelSaga: "cancel", CommandReply: "reply",
                                 FireTimer: "timer", ResumeSaga: "resume",
                                 AbandonSaga: "abandon"}
_T = TypeVar("_T")
_Store = TypeVar("_Store", RocksProjection, RocksTimerIndex)


@dataclass
class Stats:
    messages: int = 0
    transactions: int = 0
    entries: int = 0
    commands: int = 0
    dead_letters: int = 0
    aborts: int = 0
    timers_fired: int = 0
    rerouted: int = 0


class Coordinator:
    def __init__(self, settings: Settings, registry: WorkflowRegistry,
                 config: CoordinatorConfig | None = None, *,
                 progress: Callable[[str], None] | None = None) -> None:
        self.settings = settings
        self.config = config or CoordinatorConfig()
        self.kafka = settings.kafka
        self.topics = Topics.of(settings)
        self.codec = RecordCodec.for_settings(settings)
        self.decider = Decider(registry, cache_size=self.config.cache_size,
                               budget=RunBudget(
                                   max_events=settings.run_max_events,
                                   max_commands=settings.run_max_commands,
                                   max_history=settings.max_history,
                                   max_seconds=settings.run_max_seconds,
                                   max_value_bytes=settings.max_payload_bytes,
                                   max_pending_signals=settings.max_pending_signals),
                               step_timeout=timedelta(seconds=settings.step_timeout_s)
                               if settings.step_timeout_s > 0 else None)
        self.stats = Stats()
        self._say = progress or (lambda line: log.info(line))
        self._stop = threading.Event()
        self._owned: set[int] = set()
        self._known_topics: set[str] = set()
        #: Services whose command topic is known to exist.
        self._ready_services: set[str] = set()
        self._inbox_partitions = settings.partitions
        self._states = StateCache(self.config.cache_size, self.config.state_cache_bytes)
        #: Per owned inbox partition, the next offset to read as committed: every
        #: transaction sends them (see Checkpoint.commit), not only the batch's own.
        self._positions: dict[int, int] = {}
        # A rebalance refreshes the partition gauges at once: a scrape right after an
        # assignment sees every owned partition, and none that moved away.
        self._gauges_stale = False
        layout = StateLayout(settings.state_dir)
        self.projection_path = layout.projection(self.config.instance_id)
        self.timers_path = layout.timer_index(self.config.instance_id)
        self.projection: RocksProjection | None = None
        self.wheel: TimerWheel | None = None

    # ---- lifecycle -----------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()

    def run(self, *, until: Callable[[], bool] | None = None) -> Stats:
        """Process until stop() (or ``until()`` is true); returns the counters."""
        self._while_kafka_recovers(self._check_topics, "checking the topics")
        admin = admin_client(self.kafka)
        journal_source, timers_source = self._while_kafka_recovers(
            lambda: (source_of(admin, self.topics.journal), source_of(admin, self.topics.timers)),
            "describing the cluster")
        self.projection = self._open_store(RocksProjection, self.projection_path,
                                           journal_source, "saga.journal")
        index = self._open_store(RocksTimerIndex, self.timers_path, timers_source,
                                 "saga.timers")
        self.wheel = TimerWheel(index, self.projection, self.config.timer_fire_limit)
        self.producer = self._while_kafka_recovers(self._transactional_producer,
                                                   "starting the transactional producer")
        self.consumer = self._subscribed_consumer()
        set_process_context(instance=self.config.instance_id, component="coordinator")
        self._say(f"coordinator {self.config.instance_id} consuming {self.topics.inbox}")
        last_report = last_gauges = time.monotonic()
        gauged: set[int] = set()
        try:
            while not self._stop.is_set() and not (until and until()):
                batch = self._next_batch()
                due = self.wheel.due(self._owned)
                if batch or due:
                    self._process(batch, due)
                if self._gauges_stale or \
                        time.monotonic() - last_gauges >= self.config.gauges_every_s:
                    last_gauges = time.monotonic()
                    self._gauges_stale = False
                    gauged = observe.partitions(self.consumer, self.topics.inbox, self._owned,
                                                self._positions, self.wheel.index, gauged)
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
            index.close()
            self.decider.forget()
        return self.stats

    def _next_batch(self) -> list[Message]:
        """What the inbox holds now, up to a batch; when it holds nothing, the first
        input to come within max_wait_ms and what came with it. consume(n, wait) alone
        waits out ``wait`` whenever fewer than n inputs are there: at a low load that
        added max_wait_ms to every step. Under load the batches still fill, from what
        arrived while the last one was decided."""
        batch: list[Message] = self.consumer.consume(self.config.batch_size, 0)
        if batch:
            return batch
        first = self.consumer.poll(self.config.max_wait_ms / 1000)
        if first is None:
            return []
        return [first, *self.consumer.consume(self.config.batch_size - 1, 0)]

    def _open_store(self, kind: Callable[[Path], _Store], path: Path, source: str,
                    topic: str) -> _Store:
        """A local store that is a cache of ``topic`` on this cluster (caught up on
        assignment), rebuilt when it is not (saga/kafka/caches.py)."""
        real = self.settings.topic(topic)
        return open_topic_cache(
            kind, path, source=source, topic=topic, say=self._say,
            past_end=lambda offsets: self._while_kafka_recovers(
                lambda: clients.offsets_past_end(self.kafka, real, offsets),
                f"reading {topic}'s end"))

    def _while_kafka_recovers(self, step: Callable[[], _T], what: str) -> _T:
        """``step()``, tried again while the cluster answers with transient errors."""
        deadline = time.monotonic() + self.config.startup_wait_s
        while True:
            try:
                return step()
            except (KafkaUnavailable, KafkaException, TimeoutError) as exc:
                transient = isinstance(exc, KafkaUnavailable | TimeoutError) \
                    or clients.is_transient(exc)
                if not transient or time.monotonic() >= deadline:
                    raise
                self._say(f"{what}: Kafka is not ready ({exc}); trying again")
                time.sleep(2)

    def _transactional_producer(self) -> Any:
        producer = clients.producer(
            self.kafka, transactional_id=f"{self.settings.topic_prefix}saga-coordinator-"
            f"{self.config.instance_id}")
        # Fences any earlier producer with this id and aborts its open transaction.
        producer.init_transactions(60)
        return producer

    def _subscribed_consumer(self) -> Any:
        prefix = self.settings.topic_prefix
        consumer = clients.consumer(
            self.kafka, f"{prefix}saga-coordinator",
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
        consumer.subscribe([self.topics.inbox], on_assign=self._on_assign,
                           on_revoke=self._on_revoke, on_lost=self._on_lost)
        return consumer

    def _check_topics(self) -> None:
        admin = admin_client(self.kafka)
        specs = load_specs(self.settings)
        problems = [p for p in check_topics(admin, specs)
                    if "co-partitioning" in p or "is missing" in p]
        if problems:
            raise TopicMismatch(problems)
        self._known_topics = {s.name for s in specs}
        self._inbox_partitions = len(clients.partitions_of(self.kafka, self.topics.inbox))

    # ---- rebalance -----------------------------------------------------------------
    def _on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        assert self.projection is not None
        assert self.wheel is not None
        numbers = sorted(tp.partition for tp in partitions)
        began = time.monotonic()
        # First the committed offsets: a read_committed consumer fetches them with
        # require_stable, so the broker holds the answer while the previous owner's
        # transaction is open (KIP-447). Only once it is resolved is the journal
        # complete; catching up before it could miss what a paused old owner commits.
        for tp in self._committed(consumer, partitions):
            if tp.offset >= 0:
                self._positions[tp.partition] = tp.offset
        applied = catch_up(self.projection, self.kafka, self.topics.journal, numbers,
                           self.codec)
        timer_records = catch_up_timers(self.wheel.index, self.kafka, self.topics.timers,
                                        numbers, self.codec)
        self._owned.update(numbers)
        self._gauges_stale = True
        metrics.REBALANCES.labels("assigned").inc()
        self._say(f"assigned partitions {numbers}; caught up {applied} journal entries and "
                  f"{timer_records} timer records in {time.monotonic() - began:.2f}s")

    def _committed(self, consumer: Any, partitions: list[TopicPartition]
                   ) -> list[TopicPartition]:
        """The group's committed offsets of ``partitions``, waiting out open
        transactions (up to their timeout) and transient errors."""
        return self._while_kafka_recovers(
            lambda: consumer.committed(partitions, timeout=self.config.committed_wait_s),
            "fetching the committed offsets")

    def _on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        # Between batches no transaction is open, so there is nothing to commit here;
        # live coroutines of sagas that move away must not be reused if they come back.
        self._owned.difference_update(tp.partition for tp in partitions)
        for tp in partitions:
            self._positions.pop(tp.partition, None)
        self._gauges_stale = True
        self.decider.forget()
        self._states.clear()
        metrics.REBALANCES.labels("revoked").inc()
        self._say(f"revoked partitions {sorted(tp.partition for tp in partitions)}")

    def _on_lost(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        self._on_revoke(consumer, partitions)

    # ---- one batch -----------------------------------------------------------------
    def _process(self, batch: list[Message], due: list[PendingTimer]) -> None:
        assert self.projection is not None
        assert self.wheel is not None
        began = time.monotonic()
        now_ms = int(time.time() * 1000)
        outbox = Outbox(self.topics, self.codec, "coordinator", self._inbox_partitions)
        consumed: dict[int, int] = {}
        first: dict[int, int] = {}
        for message in batch:
            if message.error() is None:
                _, partition, offset = clients.where(message)
                first.setdefault(partition, offset)
        try:
            self.wheel.fire(due, outbox)
            for message in batch:
                error = message.error()
                if error is not None:
                    if error.fatal() or error.code() == KafkaError._FATAL:
                        self._fatal(error)
                    log.warning("consume error: %s", error)
                    continue
                _, partition, offset = clients.where(message)
                consumed[partition] = offset + 1
                self._decide(message, partition, offset, now_ms, outbox)
        except ClaimStoreUnavailable as exc:  # no transaction began
            self._say(f"{exc}; re-reading the batch")
            self._drop_batch(outbox)
            self._rewind(first)
            time.sleep(1)  # an unmounted directory must not spin the loop
            return
        if not consumed and not due:
            return
        try:
            self._ensure_command_topics(outbox.services)
        except (SagaError, KafkaException, TimeoutError) as exc:  # no transaction began
            self._say(f"creating a command topic failed ({exc}); re-reading the batch")
            self._drop_batch(outbox)
            self._rewind(first)
            time.sleep(1)  # a refusal that persists must not spin the loop
            return
        checkpoint = Checkpoint(self.producer, self.consumer, self.topics, self.projection,
                                self.wheel.index)
        offsets = {p: o for p, o in self._positions.items() if p in self._owned}
        offsets.update(consumed)
        committing = time.monotonic()
        try:
            sizes = checkpoint.commit(outbox, offsets)
        except KafkaException as exc:
            self._recover(exc, checkpoint, outbox, first)
            return
        except ClientStuck as exc:
            self._replace_producer(exc, outbox, first)
            return
        self._positions.update(consumed)
        self._states.put_all(outbox.states, sizes)
        observe.committed(outbox, time.monotonic() - began, time.monotonic() - committing)
        self.stats.timers_fired += outbox.timers_fired
        self.stats.messages += len(batch)
        self.stats.transactions += 1
        self.stats.entries += len(outbox.entries)
        self.stats.commands += outbox.commands
        self.stats.dead_letters += outbox.dead_letters
        self.stats.rerouted += outbox.rerouted_inputs

    def _decide(self, message: Message, partition: int, offset: int, now_ms: int,
                outbox: Outbox) -> None:
        assert self.projection is not None
        try:
            inbox = self.codec.decode_inbox(message.value())
        except CodecError as exc:
            self._dead_letter(outbox, message, DeadLetterReason.UNDECODABLE,
                              f"{type(exc).__name__}: {exc}")
            return
        outbox.inputs[_INPUT_KINDS.get(type(inbox.value), "other")] += 1
        key = message.key()
        if key is not None and key != inbox.saga_id.encode():
            self._dead_letter(outbox, message, DeadLetterReason.KEY_MISMATCH,
                              f"record key {key!r} is not the saga id {inbox.saga_id!r}")
            return
        saga_id = inbox.saga_id
        home = partition_of(saga_id, self._inbox_partitions)
        if key is None or home != partition:
            # Another client's partitioner (or no key): applied here it would split the
            # saga's journal across partitions. Sent on to its own partition instead.
            outbox.rerouted(saga_id, message.value(), home, clients.headers_of(message))
            log.warning("%s/%d/%d (saga %s, key %r) belongs in partition %d: re-routed",
                        self.topics.inbox, partition, offset, saga_id, key, home)
            return
        state = outbox.states.get(saga_id) or self._states.get(saga_id) \
            or self.projection.get(saga_id)
        value = inbox.value
        traced = tracing.enabled()
        if isinstance(value, StartSaga) and not value.trace:
            # The starter's trace context rides in a header; the saga keeps it.
            value = replace(value, trace=tracing.header(clients.headers_of(message)))
        try:
            if traced:
                started_by = state.trace if state is not None else \
                    value.trace if isinstance(value, StartSaga) else ""
                with log_context(saga_id=saga_id, partition=partition), tracing.span(
                        f"saga.decide {_INPUT_KINDS.get(type(value), 'input')}",
                        parent=tracing.saga_context(saga_id, started_by),
                        attributes={"saga.id": saga_id, "kafka.partition": partition,
                                    "kafka.offset": offset}):
                    decision = self.decider.decide(saga_id, state, value, now_ms)
            else:
                with log_context(saga_id=saga_id, partition=partition):
                    decision = self.decider.decide(saga_id, state, value, now_ms)
        except Exception as exc:
            # An impossible history, or a bug of ours: the input is kept, with why.
            log.exception("deciding %s for saga %s failed", type(inbox.value).__name__,
                          saga_id)
            self.decider.forget([saga_id])
            self._dead_letter(outbox, message, DeadLetterReason.DECISION_FAILED,
                              f"{type(exc).__name__}: {exc}")
            return
        if decision.rejection is not None:
            outbox.outcomes["rejected"] += 1
            self._dead_letter(outbox, message, decision.rejection.reason,
                              decision.rejection.detail)
            return
        if not decision.entries or decision.state is None:
            outbox.outcomes["unchanged"] += 1
            return
        outbox.outcomes["journaled"] += 1
        cause = f"{self.topics.inbox}/{partition}/{offset}"
        try:
            outbox.decided(decision.state, decision.entries, partition, cause, state)
        except CodecError as exc:
            # What the saga decided cannot be written (the engine checks values where
            # the workflow makes its calls; this is the last line). Keep the input and
            # park the saga where its committed state left it.
            self._dead_letter(outbox, message, DeadLetterReason.UNENCODABLE_DECISION,
                              f"{type(exc).__name__}: {exc}")
            if state is not None:
                parked = self.decider.park(saga_id, state, ev.ParkReason.UNENCODABLE,
                                           f"its decision could not be encoded: {exc}",
                                           now_ms)
                if parked.entries and parked.state is not None:
                    outbox.decided(parked.state, parked.entries, partition, cause, state)

    def _dead_letter(self, outbox: Outbox, message: Message, reason: str, detail: str
                     ) -> None:
        topic, partition, offset = clients.where(message)
        outbox.dead_letter(Source(topic, partition, offset, message.key(), message.value()),
                           reason, detail)
        log.warning("dead-lettered %s/%s/%s: %s (%s)", topic, partition, offset, reason, detail)

    def _ensure_command_topics(self, services: set[str]) -> None:
        """Create the command topic of a service no topic spec names. Creating beats
        failing: a produce to a missing topic would stall the transaction until it timed
        out, and the saga's step would never be sent."""
        for service in sorted(services - self._ready_services):
            # Once per service and process: reading the topic specs for every batch was
            # a twelfth of the coordinator's time.
            spec = service_topic_spec(self.settings, service)
            if spec.name not in self._known_topics:
                create_topics(admin_client(self.kafka), [spec])
                self._known_topics.add(spec.name)
                self._say(f"created {spec.name} for a service no topic spec names")
            self._ready_services.add(service)

    # ---- when a batch fails --------------------------------------------------------
    def _recover(self, exc: KafkaException, checkpoint: Checkpoint, outbox: Outbox,
                 first: dict[int, int]) -> None:
        """Abort the batch and read it again; a fenced or fatal error stops the process."""
        error: KafkaError = exc.args[0]
        self._drop_batch(outbox)
        if error.fatal() or error.code() == KafkaError._FATAL or not (
                error.txn_requires_abort() or error.retriable()):
            self._fatal(error, exc)
        log.warning("transaction aborted (%s); re-reading the batch", error)
        observe.aborted()
        checkpoint.abort()
        self._rewind(first)

    def _fatal(self, error: KafkaError, cause: BaseException | None = None) -> None:
        fenced = error.code() in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED,
                                  KafkaError.INVALID_PRODUCER_EPOCH,
                                  KafkaError.FENCED_INSTANCE_ID)
        hint = ("another instance with the same --instance-id took over (it fenced this "
                "one); give every instance its own id" if fenced else
                "see the error; the batch was not committed and is read again on restart")
        raise CoordinatorFenced(
            f"coordinator {self.config.instance_id} cannot go on: {error.str()}",
            hint=hint) from cause

    def _replace_producer(self, exc: ClientStuck, outbox: Outbox, first: dict[int, int]
                          ) -> None:
        """Give up a producer wedged inside librdkafka and read the batch again.

        The new producer's init_transactions fences the old one, so whatever the old one
        still holds open is aborted by the broker and never becomes visible."""
        self._drop_batch(outbox)
        stuck = clients.stuck_calls()
        if stuck > self.config.max_stuck_producers:
            raise CoordinatorFenced(
                f"coordinator {self.config.instance_id}: {stuck} transactional producers "
                "replaced in a row are still blocked inside librdkafka",
                hint="restart the process; if it recurs, check the brokers' health and "
                "the network between them")
        self._say(f"{exc}; replacing the transactional producer and re-reading the batch")
        metrics.PRODUCER_REPLACEMENTS.inc()
        # The old producer is not kept: its blocked call holds it until it returns.
        self.producer = self._transactional_producer()
        self._rewind(first)

    def _drop_batch(self, outbox: Outbox) -> None:
        """Forget what an aborted batch decided: its coroutines and cached states."""
        self.decider.forget(outbox.states)
        self._states.clear()
        self.stats.aborts += 1

    def _rewind(self, first: dict[int, int]) -> None:
        for partition, offset in first.items():
            self.consumer.seek(TopicPartition(self.topics.inbox, partition, offset))
