"""What a coordinator needs before its first batch: checked topics, its local stores,
a transactional producer and a group consumer, each waited for while Kafka recovers."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from confluent_kafka import KafkaException

from saga.config import Settings
from saga.errors import KafkaUnavailable, TopicMismatch
from saga.kafka import clients
from saga.kafka.caches import open_topic_cache
from saga.kafka.topics import admin_client, check_topics, load_specs
from saga.store.projection import RocksProjection
from saga.store.timer_index import RocksTimerIndex

_T = TypeVar("_T")
_Store = TypeVar("_Store", RocksProjection, RocksTimerIndex)
Say = Callable[[str], None]


def while_kafka_recovers(step: Callable[[], _T], what: str, *, wait_s: float, say: Say
                         ) -> _T:
    """``step()``, tried again while the cluster answers with transient errors, for up
    to ``wait_s``."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return step()
        except (KafkaUnavailable, KafkaException, TimeoutError) as exc:
            transient = isinstance(exc, KafkaUnavailable | TimeoutError) \
                or clients.is_transient(exc)
            if not transient or time.monotonic() >= deadline:
                raise
            say(f"{what}: Kafka is not ready ({exc}); trying again")
            time.sleep(2)


def checked_topics(settings: Settings, inbox: str) -> tuple[set[str], int]:
    """The topic names the specs hold and the inbox's partition count; TopicMismatch
    when a topic is missing or the co-partitioned topics disagree."""
    specs = load_specs(settings)
    problems = [p for p in check_topics(admin_client(settings.kafka), specs)
                if "co-partitioning" in p or "is missing" in p]
    if problems:
        raise TopicMismatch(problems)
    return {s.name for s in specs}, len(clients.partitions_of(settings.kafka, inbox))


def open_store(kind: Callable[[Path], _Store], path: Path, *, settings: Settings,
               source: str, topic: str, say: Say,
               recovering: Callable[[Callable[[], Any], str], Any]) -> _Store:
    """A local store that is a cache of ``topic`` on this cluster (caught up on
    assignment), rebuilt when it is not (saga/kafka/caches.py)."""
    real = settings.topic(topic)
    return open_topic_cache(
        kind, path, source=source, topic=topic, say=say,
        past_end=lambda offsets: recovering(
            lambda: clients.offsets_past_end(settings.kafka, real, offsets),
            f"reading {topic}'s end"))


#: Transactional producers of one coordinator, used in turn (TransactionalProducers).
PRODUCERS = 2


def transactional_id(settings: Settings, instance_id: str, slot: int) -> str:
    """The id of producer ``slot`` of an instance: stable, so a restart fences its own
    earlier producers (the first keeps the id of releases that had one producer)."""
    base = f"{settings.topic_prefix}saga-coordinator-{instance_id}"
    return base if slot == 0 else f"{base}#{slot}"


def transactional_producer(settings: Settings, instance_id: str, slot: int = 0) -> Any:
    producer = clients.producer(settings.kafka,
                                transactional_id=transactional_id(settings, instance_id, slot))
    # Fences any earlier producer with this id and aborts its open transaction.
    producer.init_transactions(60)
    return producer


class TransactionalProducers:
    """The coordinator's transactional producers, one per batch in turn.

    Right after a commit the broker is still writing that transaction's markers, and
    the same producer's next AddPartitionsToTxn is answered CONCURRENT_TRANSACTIONS,
    which librdkafka retries after a fixed 20 ms: back to back, every batch paid it
    (a flush of 35-45 ms per batch at 100 sagas/s, two thirds of the loop). The other
    producer's last transaction completed a whole batch ago. Batches stay in order:
    each begins only after the one before it has committed (or aborted), so every
    partition holds them in the order they were decided."""

    def __init__(self, make: Callable[[int], Any]) -> None:
        self._make = make
        self._slots = [make(slot) for slot in range(PRODUCERS)]
        self._turn = 0

    @property
    def current(self) -> Any:
        return self._slots[self._turn]

    def committed(self) -> None:
        """The current producer's transaction committed: the next batch takes the other."""
        self._turn = (self._turn + 1) % len(self._slots)

    def replace_current(self) -> None:
        """A new producer for the current slot, whose init_transactions fences the old
        one (wedged inside librdkafka) and aborts what it held open."""
        self._slots[self._turn] = self._make(self._turn)


def group_consumer(settings: Settings) -> Any:
    """The coordinators' group member, not yet subscribed."""
    return clients.consumer(
        settings.kafka, f"{settings.topic_prefix}saga-coordinator",
        **{"partition.assignment.strategy": "cooperative-sticky",
           # Dynamic membership on purpose: with static members (group.instance.id) a
           # leader killed between the two rounds of a cooperative rebalance rejoins
           # without a rebalance, and the partitions it was handing over stay assigned
           # to nobody. A dead instance's partitions move after this:
           "session.timeout.ms": 10000,
           # Members learn of a rebalance from a heartbeat reply: a shorter interval
           # than the default 3 s shortens the pause of moving partitions.
           "heartbeat.interval.ms": 1000,
           "max.poll.interval.ms": 300000})
