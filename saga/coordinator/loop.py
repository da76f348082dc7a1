"""The coordinator loop: consume saga.inbox, decide, and hand each batch to a Checkpoint.

Start-up (startup.py) checks the topics, opens the local stores (rebuilding what is
unreadable) and the transactional producer. Each turn consumes a batch, takes the due
timers, routes every input (router.py) and decides those it should into an Outbox
(pure: no Kafka call), creates any command topic the batch needs (outside any
transaction), and commits the batch through a Checkpoint. On every assignment the
stores first catch up with the journal and saga.timers (recovery.py).

A batch that cannot commit is read again, by one path (``_retry_batch``); what becomes
of its transaction and producer first (aborted, replaced, or the end of the process) is
failures.py's.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition

from saga.config import Settings
from saga.coordinator import observe
from saga.coordinator.checkpoint import Checkpoint
from saga.coordinator.config import CoordinatorConfig
from saga.coordinator.failures import BatchFailures, Retry
from saga.coordinator.outbox import Outbox, Topics
from saga.coordinator.ownership import Ownership
from saga.coordinator.recovery import catch_up_projection, catch_up_timers
from saga.coordinator.router import Decide, InputRouter, SendOn
from saga.coordinator.startup import (
    checked_topics,
    group_consumer,
    open_store,
    transactional_producer,
)
from saga.coordinator.state_cache import StateCache
from saga.coordinator.timer_wheel import TimerWheel
from saga.engine import events as ev
from saga.engine.inputs import StartSaga
from saga.engine.limits import decider_for
from saga.engine.state import SagaState
from saga.engine.workflow import WorkflowRegistry
from saga.errors import (
    ClaimStoreUnavailable,
    ClientStuck,
    CodecError,
    RecordRefused,
    SagaError,
)
from saga.kafka import clients
from saga.kafka.clients import while_kafka_recovers
from saga.kafka.dead_letters import Source
from saga.kafka.records import DeadLetterReason, RecordCodec
from saga.kafka.topics import admin_client, create_topics, service_topic_spec, source_of
from saga.layout import StateLayout
from saga.store.projection import RocksProjection
from saga.store.timer_index import PendingTimer, RocksTimerIndex
from saga.telemetry import metrics, tracing
from saga.telemetry.logs import log_context, set_process_context

log = logging.getLogger("saga.coordinator")
_T = TypeVar("_T")


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
        self.decider = decider_for(settings, registry, cache_size=self.config.cache_size)
        self.stats = Stats()
        self._say = progress or (lambda line: log.info(line))
        self._stop = threading.Event()
        self.ownership = Ownership()
        self._known_topics: set[str] = set()
        #: Services whose command topic is known to exist.
        self._ready_services: set[str] = set()
        self.origin = settings.origin_keys()
        self.router = InputRouter(self.codec, settings.partitions, topic=self.topics.inbox,
                                  origin=self.origin)
        self._states = StateCache(self.config.cache_size, self.config.state_cache_bytes)
        layout = StateLayout(settings.state_dir)
        self.projection_path = layout.projection(self.config.instance_id)
        self.timers_path = layout.timer_index(self.config.instance_id)
        self.projection: RocksProjection | None = None
        self.wheel: TimerWheel | None = None
        self.failures = BatchFailures(
            self.config.instance_id, self.topics.inbox, self.topics.dlq,
            max_stuck_producers=self.config.max_stuck_producers,
            new_producer=lambda: self._recovering(self._new_producer,
                                                  "starting a transactional producer"),
            say=self._say)

    # ---- lifecycle -----------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()

    def run(self, *, until: Callable[[], bool] | None = None) -> Stats:
        """Process until stop() (or ``until()`` is true); returns the counters."""
        self._known_topics, partitions = self._recovering(
            lambda: checked_topics(self.settings, self.topics.inbox), "checking the topics")
        self.router.partitions = partitions
        admin = admin_client(self.kafka)
        journal_source, timers_source = self._recovering(
            lambda: (source_of(admin, self.topics.journal), source_of(admin, self.topics.timers)),
            "describing the cluster")
        self.projection = open_store(RocksProjection, self.projection_path,
                                     settings=self.settings, source=journal_source,
                                     topic="saga.journal", say=self._say,
                                     recovering=self._recovering)
        index = open_store(RocksTimerIndex, self.timers_path, settings=self.settings,
                           source=timers_source, topic="saga.timers", say=self._say,
                           recovering=self._recovering)
        self.wheel = TimerWheel(index, self.projection, self.config.timer_fire_limit)
        self.failures.start_producer()
        self.consumer = group_consumer(self.settings)
        self.consumer.subscribe([self.topics.inbox], on_assign=self._on_assign,
                                on_revoke=self._on_revoke, on_lost=self._on_revoke)
        set_process_context(instance=self.config.instance_id, component="coordinator")
        self._say(f"coordinator {self.config.instance_id} consuming {self.topics.inbox}")
        try:
            self._turns(until)
        finally:
            # No flush: every record is produced inside a transaction that has been
            # committed or aborted by now, and a fenced producer would only raise.
            self.consumer.close()
            self.projection.close()
            index.close()
            self.decider.forget()
        return self.stats

    def _turns(self, until: Callable[[], bool] | None) -> None:
        assert self.wheel is not None
        last_report = last_gauges = time.monotonic()
        gauged: set[int] = set()
        ownership = self.ownership
        while not self._stop.is_set() and not (until and until()):
            batch = self._next_batch()
            due = self.wheel.due(ownership.owned)
            if batch or due:
                self._process(batch, due)
            if ownership.changed or \
                    time.monotonic() - last_gauges >= self.config.gauges_every_s:
                last_gauges = time.monotonic()
                ownership.changed = False
                gauged = observe.partitions(self.consumer, self.topics.inbox,
                                            ownership.owned, ownership.positions,
                                            self.wheel.index, gauged)
            if self.config.report_every_s and \
                    time.monotonic() - last_report >= self.config.report_every_s:
                last_report = time.monotonic()
                self._say(f"processed {self.stats.messages} inputs in "
                          f"{self.stats.transactions} transactions; partitions "
                          f"{sorted(ownership.owned)}")

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

    def _recovering(self, step: Callable[[], _T], what: str) -> _T:
        return while_kafka_recovers(step, what, wait_s=self.config.startup_wait_s,
                                    say=self._say)

    def _new_producer(self) -> Any:
        return transactional_producer(self.settings, self.config.instance_id)

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
        committed = self._recovering(
            lambda: consumer.committed(partitions, timeout=self.config.committed_wait_s),
            "fetching the committed offsets")
        applied, workers = catch_up_projection(self.projection, self.settings,
                                                self.topics.journal, numbers, self.codec)
        timer_records = catch_up_timers(self.wheel.index, self.kafka, self.topics.timers,
                                        numbers, self.codec)
        self.ownership.assigned(((tp.partition, tp.offset) for tp in committed), numbers)
        metrics.REBALANCES.labels("assigned").inc()
        apart = f" (in {workers} worker processes)" if workers > 1 else ""
        self._say(f"assigned partitions {numbers}; caught up {applied} journal entries{apart} "
                  f"and {timer_records} timer records in {time.monotonic() - began:.2f}s")

    def _on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        # Between batches no transaction is open, so there is nothing to commit here;
        # live coroutines of sagas that move away must not be reused if they come back.
        # A lost assignment is handled alike.
        self.ownership.revoked(tp.partition for tp in partitions)
        self.decider.forget()
        self._states.clear()
        self.failures.revoked(tp.partition for tp in partitions)
        metrics.REBALANCES.labels("revoked").inc()
        self._say(f"revoked partitions {sorted(tp.partition for tp in partitions)}")

    # ---- one batch -----------------------------------------------------------------
    def _process(self, batch: list[Message], due: list[PendingTimer]) -> None:
        outbox = Outbox(self.topics, self.codec, "coordinator", self.router.partitions,
                        self.origin)
        retry = self._try_batch(batch, due, outbox)
        if retry is not None:
            self._retry_batch(batch, outbox, retry)

    def _try_batch(self, batch: list[Message], due: list[PendingTimer], outbox: Outbox
                   ) -> Retry | None:
        """Decide and commit the batch; what to say when it must be read again."""
        assert self.projection is not None
        assert self.wheel is not None
        began = time.monotonic()
        try:
            self.wheel.fire(due, outbox)
            consumed = self._decide_batch(batch, outbox)
        except ClaimStoreUnavailable as exc:  # no transaction began
            return Retry(f"{exc}; re-reading the batch", pause_s=1)
        if not consumed and not due:
            return None
        try:
            self._ensure_command_topics(outbox.services)
        except (SagaError, KafkaException, TimeoutError) as exc:  # no transaction began
            return Retry(f"creating a command topic failed ({exc}); re-reading the batch",
                         pause_s=1)
        failures = self.failures
        checkpoint = Checkpoint(failures.producer, self.consumer, self.topics, self.projection,
                                self.wheel.index)
        committing = time.monotonic()
        try:
            sizes = checkpoint.commit(outbox, self.ownership.to_commit(consumed))
        except KafkaException as exc:
            return failures.aborted(exc, checkpoint)
        except ClientStuck as exc:
            return failures.replaced_producer(exc)
        except RecordRefused as exc:
            return failures.refused_record(exc, checkpoint)
        self.ownership.committed(consumed)
        failures.committed(consumed)
        self._states.put_all(outbox.states, sizes)
        observe.committed(outbox, time.monotonic() - began, time.monotonic() - committing)
        self.stats.timers_fired += outbox.timers_fired
        self.stats.messages += len(batch)
        self.stats.transactions += 1
        self.stats.entries += len(outbox.entries)
        self.stats.commands += outbox.commands
        self.stats.dead_letters += outbox.dead_letters
        self.stats.rerouted += outbox.rerouted_inputs
        return None

    def _decide_batch(self, batch: list[Message], outbox: Outbox) -> dict[int, int]:
        """Route and decide every input into ``outbox``; per partition, the next offset."""
        now_ms = int(time.time() * 1000)
        consumed: dict[int, int] = {}
        refused = self.failures.refused
        for message in batch:
            error = message.error()
            if error is not None:
                if error.fatal() or error.code() == KafkaError._FATAL:
                    self.failures.fatal(error)
                log.warning("consume error: %s", error)
                continue
            _, partition, offset = clients.where(message)
            consumed[partition] = offset + 1
            outbox.reading = (partition, offset)
            if refused and (partition, offset) in refused:
                self._dead_letter_refused(outbox, message, *refused[partition, offset])
                continue
            route = self.router.route(message.key(), message.value(), partition,
                                      partial(clients.headers_of, message))
            if route.kind is not None:
                outbox.inputs[route.kind] += 1
            if isinstance(route, Decide):
                self._decide(route, message, partition, offset, now_ms, outbox)
            elif isinstance(route, SendOn):
                outbox.rerouted(route.saga_id, message.value(), route.home,
                                clients.headers_of(message))
                log.warning("%s/%d/%d (saga %s, key %r) belongs in partition %d: re-routed",
                            self.topics.inbox, partition, offset, route.saga_id,
                            message.key(), route.home)
            else:
                self._dead_letter(outbox, message, route.reason, route.detail)
        return consumed

    def _decide(self, route: Decide, message: Message, partition: int, offset: int,
                now_ms: int, outbox: Outbox) -> None:
        assert self.projection is not None
        saga_id, value = route.saga_id, route.value
        state = outbox.states.get(saga_id) or self._states.get(saga_id) \
            or self.projection.get(saga_id)
        try:
            with log_context(saga_id=saga_id, partition=partition), tracing.decision(
                    saga_id, route.kind, partition, offset,
                    lambda: _started_by(state, route)):
                decision = self.decider.decide(saga_id, state, value, now_ms)
        except Exception as exc:
            # An impossible history, or a bug of ours: the input is kept, with why.
            log.exception("deciding %s for saga %s failed", type(value).__name__, saga_id)
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

    def _dead_letter_refused(self, outbox: Outbox, message: Message, times: int,
                             why: str) -> None:
        """The letter of an input whose processing wrote a record Kafka refused; when
        even that letter was refused, a bare one (the original stays at its offset)."""
        if times == 1:
            self._dead_letter(outbox, message, DeadLetterReason.RECORD_REFUSED, why)
            return
        topic, partition, offset = clients.where(message)
        outbox.dead_letter(Source(topic, partition, offset, None, None),
                           DeadLetterReason.RECORD_REFUSED,
                           f"{why[:1000]} [its dead letter was refused too: neither key "
                           "nor value is kept; the record is at the source offset]")
        log.warning("dead-lettered %s/%s/%s bare: %s", topic, partition, offset, why)

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
    def _retry_batch(self, batch: list[Message], outbox: Outbox, retry: Retry) -> None:
        """Forget what the batch decided (its coroutines, cached states) and seek back
        to its first input in each partition, so the next turn decides it again."""
        self.decider.forget(outbox.states)
        self._states.clear()
        self.stats.aborts += 1
        if retry.warn:
            log.warning("%s", retry.why)
        else:
            self._say(retry.why)
        first: dict[int, int] = {}
        for message in batch:
            if message.error() is None:
                _, partition, offset = clients.where(message)
                first.setdefault(partition, offset)
        for partition, offset in first.items():
            # A partition revoked meanwhile is read by its new owner from the committed
            # offset; seeking it here would raise (it is no longer assigned).
            if partition in self.ownership.owned:
                self.consumer.seek(TopicPartition(self.topics.inbox, partition, offset))
        if retry.pause_s:
            time.sleep(retry.pause_s)


def _started_by(state: SagaState | None, route: Decide) -> str:
    """The trace context the saga was started under ("" when it was not traced)."""
    if state is not None:
        return state.trace
    return route.value.trace if isinstance(route.value, StartSaga) else ""
