"""The service runner: a Service's handlers on aiokafka, each step's effect once, on
whichever instance handles it.

The instances of a service share the consumer group ``service-<name>``; each handles
the command partitions the group assigns it. Partition p has a transactional producer
of its own, ``service-<name>-<p>`` (one transactional id per input partition, as Kafka
Streams' first exactly-once mode has it), so whichever instance takes p over fences the
one that had it. Per batch of partition p, one transaction holds the replies, the dead
letters, the state changes (into partition p of ``<service>.state``) and the consumed
offset; the local store is written only after it commits.

The batches of one consume round are handled one after another, then their
transactions commit side by side (each a handful of round trips to the broker: one
after another they made a step wait for every partition's). A batch that read what an
earlier batch of the round wrote (shared keys, such as a stock level) commits only
after that one has, and is read again if it failed (RoundWrites). A round takes
commands for SAGA_SERVICE_ROUND_BUDGET_S at most (a rebalance that waits stops it at
the handler in hand) and commits what it handled; the rest is read again next round.
So the consumer is polled well within its max poll interval, and a partition moves
only once what was handled of it is committed.

On assignment of p: start p's producer (its init_transactions fences the previous
owner's and aborts what it left open), restore partition p of the changelog into the
local store, then handle p's commands. A paused old owner that wakes finds its producer
fenced, drops everything and rejoins the group: nothing it did after the fence counts.

A step's reply is stored under its idempotency key (the same for every attempt): a
redelivered command, or a new attempt of a step that already has an OK or business
answer (a retry after a timeout), is answered from the store without running the
handler again. Only after a technical failure does a new attempt run it.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.errors import InvalidProducerEpoch, KafkaError, ProducerFenced
from aiokafka.producer import sender as aiokafka_sender
from aiokafka.structs import TopicPartition

from saga.config import Settings
from saga.errors import ClaimStoreUnavailable, CodecError, ServiceFenced, TopicError
from saga.kafka import clients, security
from saga.kafka.caches import open_topic_cache
from saga.kafka.records import RecordCodec
from saga.kafka.topics import (
    admin_client,
    create_topics,
    service_state_spec,
    service_topic_spec,
    source_of,
)
from saga.layout import StateLayout
from saga.service.changelog import restore
from saga.service.dispatch import Dispatcher, Outgoing
from saga.service.handlers import Service
from saga.service.state import BatchState, RoundWrites
from saga.store.service_store import ServiceStore
from saga.telemetry import metrics

log = logging.getLogger("saga.services")
_FENCED = (ProducerFenced, InvalidProducerEpoch)

# A partition's next transaction often begins within milliseconds of its last commit,
# while the broker is still writing that commit's markers: AddPartitionsToTxn answers
# CONCURRENT_TRANSACTIONS, and aiokafka waits a fixed 20 ms (its BACKOFF_OVERRIDE)
# before asking again, or retry_backoff_ms (100 ms by default) once the transaction
# has a partition. Measured on one broker, back-to-back transactions took 25 ms each at
# p50 that way and 5.7 ms with a 2 ms wait: a fifth of every step's latency. librdkafka
# (the coordinator) needs no such help.
TXN_RETRY_BACKOFF_S = 0.002
if hasattr(aiokafka_sender, "BACKOFF_OVERRIDE"):  # a later aiokafka may drop it
    aiokafka_sender.BACKOFF_OVERRIDE = TXN_RETRY_BACKOFF_S
#: retry_backoff_ms of the services' producers: how soon a refused request is sent
#: again (also between transactions that already hold a partition; see above).
PRODUCER_RETRY_BACKOFF_MS = 10
#: Kafka's own default of max.poll.interval.ms, the least a service asks for.
_POLL_INTERVAL_S = 300.0
#: What a round may take beyond its budget and one handler: its commits, a slow broker.
_ROUND_MARGIN_S = 60.0


class ServiceRunner:
    """Consumes a service's command topic and replies into each saga's inbox."""

    def __init__(self, service: Service, settings: Settings, *,
                 instance_id: str | None = None) -> None:
        self.service = service
        self.settings = settings
        self.instance_id = instance_id or socket.gethostname()
        self.codec = RecordCodec.for_settings(settings)
        self.topic = settings.topic(f"{service.name}.commands")
        self.state_topic = settings.topic(f"{service.name}.state")
        self.group = f"{settings.topic_prefix}service-{service.name}"
        self.dispatcher = Dispatcher(service, settings, self.codec)
        self._store: ServiceStore | None = None
        self._producers: dict[int, AIOKafkaProducer] = {}
        self._owned: set[int] = set()
        self._lock = asyncio.Lock()
        #: Why taking partitions over failed, for the loop to rejoin on.
        self._broken: BaseException | None = None
        #: A rebalance waits to revoke: the round in hand takes no more commands.
        self._revoking = False
        #: Per partition, the round that last took commands of it: the partition that
        #: waited longest goes first, so a budget spent early starves none.
        self._served: dict[int, int] = {}
        self._rounds = 0

    async def run(self, stop: asyncio.Event) -> None:
        self._store = await asyncio.to_thread(self._open_store)
        try:
            while not stop.is_set():
                try:
                    await self._serve(stop)
                except ServiceFenced as fenced:
                    log.warning("service %s: %s; rejoining the group", self.service.name,
                                fenced)
                    await asyncio.sleep(1)
        finally:
            self._store.close()

    # ---- start-up ------------------------------------------------------------------
    def _open_store(self) -> ServiceStore:
        """Make sure both topics exist and are co-partitioned, then open the local store
        if it is a cache of this cluster's changelog (else it is rebuilt)."""
        kafka = self.settings.kafka
        admin = admin_client(kafka)
        specs = [service_topic_spec(self.settings, self.service.name),
                 service_state_spec(self.settings, self.service.name)]
        create_topics(admin, specs)
        commands, changes = (len(clients.partitions_of(kafka, s.name)) for s in specs)
        if commands != changes:
            raise TopicError(
                f"{self.topic} has {commands} partitions and {self.state_topic} {changes}",
                hint="they must be co-partitioned: recreate the state topic with "
                f"{commands} partitions (it is rebuilt from nothing only if it is empty)")
        path = StateLayout(self.settings.state_dir).service_store(self.service.name,
                                                                  self.instance_id)
        return open_topic_cache(
            ServiceStore, path, source=source_of(admin, self.state_topic),
            topic=f"{self.service.name}.state", say=log.info,
            past_end=lambda offsets: clients.offsets_past_end(kafka, self.state_topic,
                                                              offsets))

    # ---- the consume loop ----------------------------------------------------------
    async def _serve(self, stop: asyncio.Event) -> None:
        # A round takes commands for its budget, then lets the handler in hand finish
        # (up to the handler timeout) and commits. Not polled within
        # max_poll_interval_ms, aiokafka leaves the group; a rebalance waits up to
        # rebalance_timeout_ms for revoke, which waits for that one handler.
        handler_s = self.settings.handler_timeout_s or _POLL_INTERVAL_S
        round_s = self.settings.service_round_budget_s + handler_s + _ROUND_MARGIN_S
        consumer = AIOKafkaConsumer(
            **security.aiokafka(self.settings.kafka), group_id=self.group,
            isolation_level="read_committed", enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_interval_ms=int(max(_POLL_INTERVAL_S, round_s) * 1000),
            rebalance_timeout_ms=int((handler_s + _ROUND_MARGIN_S) * 1000))
        consumer.subscribe([self.topic], listener=_Ownership(self))
        self._broken = None
        await consumer.start()
        log.info("service %s (instance %s) consuming %s", self.service.name,
                 self.instance_id, self.topic)
        try:
            while not stop.is_set():
                batches = await consumer.getmany(timeout_ms=200, max_records=500)
                if self._broken is not None:
                    raise ServiceFenced(f"taking partitions over failed: {self._broken}")
                async with self._lock:
                    await self._handle_round(consumer, batches)
        finally:
            await consumer.stop()
            await self._release(list(self._producers))

    async def revoke(self) -> None:
        """Handle nothing until the next assignment. The round in hand takes no more
        commands and commits what it handled, so the rebalance waits for one handler at
        most: waiting out a whole round (500 commands of up to a minute each) outlasted
        the rebalance, the partitions moved, and their new owner ran the same handlers
        again."""
        self._revoking = True
        try:
            async with self._lock:
                self._owned = set()
        finally:
            self._revoking = False

    async def take(self, partitions: set[int]) -> None:
        """Own exactly ``partitions``: producers for them (fencing whoever had them),
        their part of the changelog restored, before any of their commands is handled."""
        async with self._lock:
            self._owned = set()
            await self._release([p for p in self._producers if p not in partitions])
            try:
                new = sorted(partitions - set(self._producers))
                started = await asyncio.gather(*(self._producer(p) for p in new))
                self._producers.update(zip(new, started, strict=True))
                assert self._store is not None
                restored = await asyncio.to_thread(
                    restore, self._store, self.settings.kafka, self.state_topic,
                    sorted(partitions), self.codec)
            except (KafkaError, OSError, CodecError) as exc:
                self._broken = exc
                log.warning("service %s: taking partitions %s over failed: %s",
                            self.service.name, sorted(partitions), exc)
                return
            self._owned = set(partitions)
            log.info("service %s: partitions %s assigned; %d state changes restored",
                     self.service.name, sorted(partitions), restored)

    async def _producer(self, partition: int) -> AIOKafkaProducer:
        producer = AIOKafkaProducer(
            **security.aiokafka(self.settings.kafka), enable_idempotence=True,
            # No linger: each transaction holds one partition's batch, sent at its commit.
            linger_ms=0, retry_backoff_ms=PRODUCER_RETRY_BACKOFF_MS,
            transactional_id=f"{self.group}-{partition}")
        await producer.start()  # init_transactions: fences the partition's last owner
        return producer

    async def _replace_producer(self, partition: int, failed: AIOKafkaProducer) -> None:
        """A producer whose transaction failed can be left where aiokafka never leaves
        (FATAL_ERROR after a failed delivery: its next begin_transaction fails an
        assertion, which ended the process in a broker restart). A new one for the
        partition fences it, and the broker aborts what it held open. Called within the
        round, which holds ``self._lock``."""
        if self._producers.get(partition) is not failed:
            return
        await self._release([partition])
        try:
            self._producers[partition] = await self._producer(partition)
        except (KafkaError, OSError) as exc:
            # No producer: the partition's commands are read again once the group is
            # joined again, which a set _broken makes the loop do.
            self._broken = exc
            log.warning("service %s: a new producer for partition %d failed: %s",
                        self.service.name, partition, exc)

    async def _release(self, partitions: Iterable[int]) -> None:
        for partition in list(partitions):
            producer = self._producers.pop(partition)
            try:
                await producer.stop()
            except KafkaError as exc:  # a fenced producer may refuse a clean stop
                log.info("stopping the producer of partition %d: %s", partition, exc)

    async def _handle_round(self, consumer: AIOKafkaConsumer,
                            batches: dict[TopicPartition, list[Any]]) -> None:
        """Handle each partition's batch in turn, the longest-waiting partition first,
        until the round's budget is spent (SAGA_SERVICE_ROUND_BUDGET_S) or a rebalance
        waits; what was not taken is read again next round. Then commit the batches
        side by side, each after the batches whose staged writes it read."""
        self._rounds += 1
        budget = _Budget(self.settings.service_round_budget_s, lambda: self._revoking)
        writes = RoundWrites()
        prepared: list[_Prepared] = []
        for tp, records in sorted(batches.items(),
                                  key=lambda item: self._served.get(item[0].partition, 0)):
            batch = await self._prepare(consumer, tp, records, writes, budget)
            if batch is not None:
                self._served[tp.partition] = self._rounds
                writes.stage(tp.partition, batch.state.changes)
                prepared.append(batch)
        if not prepared:
            return
        loop = asyncio.get_running_loop()
        settled: dict[int, asyncio.Future[bool]] = {
            p.tp.partition: loop.create_future() for p in prepared}

        async def settle(batch: _Prepared) -> None:
            ok = False
            try:
                before = [await settled[d] for d in sorted(batch.state.depends_on)
                          if d in settled]
                if all(before):
                    ok = await self._commit(consumer, batch)
                else:  # what it read was never committed: read it again, decide again
                    consumer.seek(batch.tp, batch.records[0].offset)
            finally:
                settled[batch.tp.partition].set_result(ok)

        outcomes = await asyncio.gather(*(settle(p) for p in prepared),
                                        return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def _prepare(self, consumer: AIOKafkaConsumer, tp: TopicPartition,
                       records: list[Any], writes: RoundWrites, budget: _Budget
                       ) -> _Prepared | None:
        """The commands of ``records`` the budget leaves time for, handled; the partition
        is sought back to the first one not taken."""
        producer = self._producers.get(tp.partition)
        if tp.partition not in self._owned or producer is None:
            consumer.seek(tp, records[0].offset)  # not ours yet: read again once it is
            return None
        assert self._store is not None
        batch = BatchState(self._store, writes, tp.partition)
        out: list[Outgoing] = []
        taken = 0
        try:
            for record in records:
                if budget.spent():
                    break
                out.extend(await self.dispatcher.handle(record, batch))
                taken += 1
                budget.took()
        except ClaimStoreUnavailable as exc:  # nothing sent: the batch is read again
            log.warning("service %s: %s; reading partition %d's batch again",
                        self.service.name, exc, tp.partition)
            consumer.seek(tp, records[0].offset)
            await asyncio.sleep(1)  # an unmounted directory must not spin the loop
            return None
        if taken < len(records):
            consumer.seek(tp, records[taken].offset)  # the next round starts there
        if not taken:
            return None
        return _Prepared(tp, records[:taken], producer, batch, out)

    async def _commit(self, consumer: AIOKafkaConsumer, batch: _Prepared) -> bool:
        """One partition's transaction, then its changes into the local store; False
        when it was aborted (its batch is read again)."""
        tp, producer = batch.tp, batch.producer
        changes = list(batch.state.changes.values())
        deliveries: list[asyncio.Future[Any]] = []
        try:
            async with producer.transaction():
                for item in batch.out:
                    deliveries.append(await producer.send(item.topic, item.value, key=item.key,
                                                          headers=item.headers))
                sent = [await producer.send(self.state_topic,
                                            self.codec.encode_state_change(
                                                change, self.state_topic),
                                            key=change.key.encode(), partition=tp.partition)
                        for change in changes]
                deliveries.extend(sent)
                await producer.send_offsets_to_transaction(
                    {tp: batch.records[-1].offset + 1}, self.group)
        except _FENCED as exc:
            _settle_quietly(deliveries)
            metrics.SERVICE_BATCHES.labels(self.service.name, "fenced").inc()
            raise ServiceFenced(f"partition {tp.partition} was taken over ({exc})") from exc
        except KafkaError as exc:
            _settle_quietly(deliveries)
            metrics.SERVICE_BATCHES.labels(self.service.name, "aborted").inc()
            log.warning("service %s: the transaction of partition %d failed (%s); reading "
                        "its batch again with a new producer", self.service.name,
                        tp.partition, exc)
            consumer.seek(tp, batch.records[0].offset)
            await self._replace_producer(tp.partition, producer)
            return False
        metrics.SERVICE_BATCHES.labels(self.service.name, "committed").inc()
        if changes:
            assert self._store is not None
            delivered = [(await future).offset for future in sent]
            self._store.apply(changes, {tp.partition: max(delivered) + 1})
        return True


def _settle_quietly(deliveries: list[asyncio.Future[Any]]) -> None:
    """The send futures of a transaction that failed: their error is the transaction's,
    already handled. Unread, asyncio would log each one as "Future exception was never
    retrieved" when it is collected (a broker restart filled a log with them)."""
    def read(future: asyncio.Future[Any]) -> None:
        if not future.cancelled():
            future.exception()

    for future in deliveries:
        future.add_done_callback(read)


class _Budget:
    """The time a round may take commands: at least one, unless a rebalance waits."""

    def __init__(self, seconds: float, revoking: Callable[[], bool]) -> None:
        self._deadline = time.monotonic() + seconds
        self._revoking = revoking
        self._taken = False

    def spent(self) -> bool:
        return self._revoking() or (self._taken and time.monotonic() >= self._deadline)

    def took(self) -> None:
        self._taken = True


@dataclass(frozen=True)
class _Prepared:
    """One partition's batch, handled and waiting for its transaction."""

    tp: TopicPartition
    records: list[Any]
    producer: AIOKafkaProducer
    state: BatchState
    out: list[Outgoing]


class _Ownership(ConsumerRebalanceListener):  # type: ignore[misc]
    """aiokafka's rebalances are eager: everything is revoked, then the new assignment
    arrives. Producers of partitions that stay are kept (nobody else can have had them
    in between); the rest are stopped."""

    def __init__(self, runner: ServiceRunner) -> None:
        self._runner = runner

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._runner.revoke()

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._runner.take({tp.partition for tp in assigned})
