"""confluent-kafka client settings, in one place.

Records are not compressed: services read commands with any Kafka client, and aiokafka
needs extra libraries for every codec but gzip.

Every producer of saga inputs partitions with murmur2 (Kafka's Java default) so that a
saga id lands in the same partition whichever client sent it: the CLI, a Java service,
an aiokafka service. librdkafka's own default (CRC32) would scatter one saga's inputs.
"""

from __future__ import annotations

import logging
from typing import Any

from confluent_kafka import Consumer, Message, Producer

_log = logging.getLogger("saga.kafka")

_COMMON: dict[str, Any] = {
    "log.connection.close": False,
    "logger": _log,
}


def producer(bootstrap: str, *, transactional_id: str | None = None,
             **extra: Any) -> Producer:
    config: dict[str, Any] = {
        **_COMMON,
        "bootstrap.servers": bootstrap,
        "partitioner": "murmur2_random",
        "enable.idempotence": True,
        "linger.ms": 5,
    }
    if transactional_id is not None:
        config.update({"transactional.id": transactional_id,
                       # A crashed instance's open transaction blocks read_committed
                       # readers until it times out; keep that short.
                       "transaction.timeout.ms": 30000,
                       "message.timeout.ms": 25000})
    config.update(extra)
    return Producer(config)


def consumer(bootstrap: str, group_id: str, **extra: Any) -> Consumer:
    config: dict[str, Any] = {
        **_COMMON,
        "bootstrap.servers": bootstrap,
        "group.id": group_id,
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    }
    config.update(extra)
    return Consumer(config)


def where(message: Message) -> tuple[str, int, int]:
    """(topic, partition, offset) of a consumed record; always set on a consumed one."""
    topic, partition, offset = message.topic(), message.partition(), message.offset()
    if topic is None or partition is None or offset is None:
        raise ValueError("a record without a position: not one returned by consume()")
    return topic, partition, offset
