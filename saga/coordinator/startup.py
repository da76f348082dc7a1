"""What a coordinator needs before its first batch: checked topics, its local stores,
a transactional producer and a group consumer, each waited for while Kafka recovers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from saga.config import Settings
from saga.errors import TopicMismatch
from saga.kafka import clients
from saga.kafka.caches import open_topic_cache
from saga.kafka.topics import admin_client, check_topics, load_specs
from saga.store.projection import RocksProjection
from saga.store.timer_index import RocksTimerIndex

_T = TypeVar("_T")
_Store = TypeVar("_Store", RocksProjection, RocksTimerIndex)
Say = Callable[[str], None]


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


def transactional_producer(settings: Settings, instance_id: str) -> Any:
    producer = clients.producer(
        settings.kafka,
        transactional_id=f"{settings.topic_prefix}saga-coordinator-{instance_id}")
    # Fences any earlier producer with this id and aborts its open transaction.
    producer.init_transactions(60)
    return producer


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
