"""confluent-kafka client settings, in one place.

Records are not compressed: services read commands with any Kafka client, and aiokafka
needs extra libraries for every codec but gzip.

Every producer of saga inputs partitions with murmur2 (Kafka's Java default) so that a
saga id lands in the same partition whichever client sent it: the CLI, a Java service,
an aiokafka service. librdkafka's own default (CRC32) would scatter one saga's inputs.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

_log = logging.getLogger("saga.kafka")
_T = TypeVar("_T")

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


@dataclass(frozen=True)
class EndOfPartition:
    partition: int
    offset: int  # the next offset to read, past any transaction markers


def read_to_end(bootstrap: str, topic: str, starts: Mapping[int, int | None], *,
                batch: int = 1000) -> Iterator[Message | EndOfPartition]:
    """Every committed record of ``topic`` from each partition's start (None: the
    beginning) to its end as of now; an EndOfPartition marks each partition's end."""
    if not starts:
        return
    reader = consumer(bootstrap, f"saga-reader-{uuid.uuid4().hex}",
                      **{"enable.partition.eof": True})
    try:
        reader.assign([TopicPartition(topic, p, OFFSET_BEGINNING if o is None else o)
                       for p, o in starts.items()])
        remaining = set(starts)
        while remaining:
            # consume() waits for a full batch or its timeout: keep the timeout short, or
            # every catch-up of a quiet partition costs the whole of it.
            for message in reader.consume(batch, 0.05):
                error = message.error()
                if error is None:
                    yield message
                    continue
                if error.code() != KafkaError._PARTITION_EOF:
                    if is_transient(error):  # a broker restarting: librdkafka reconnects
                        _log.warning("reading %s: %s; retrying", topic, error.str())
                        continue
                    raise KafkaException(error)
                _, partition, offset = where(message)
                remaining.discard(partition)
                yield EndOfPartition(partition, offset)
    finally:
        reader.close()


_TRANSIENT = frozenset({KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN,
                        KafkaError._TIMED_OUT, KafkaError._RESOLVE,
                        KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
                        KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_NOT_AVAILABLE,
                        KafkaError.COORDINATOR_LOAD_IN_PROGRESS})


def is_transient(error: KafkaError | KafkaException) -> bool:
    """An error the client recovers from by itself once brokers answer again."""
    if isinstance(error, KafkaException):
        cause = error.args[0] if error.args else None
        return isinstance(cause, KafkaError) and is_transient(cause)
    return not error.fatal() and (error.retriable() or error.code() in _TRANSIENT)


def partitions_of(bootstrap: str, topic: str) -> list[int]:
    """The topic's partition numbers; KafkaException when it does not exist."""
    probe = consumer(bootstrap, f"saga-meta-{uuid.uuid4().hex}")
    try:
        info = probe.list_topics(topic, timeout=30).topics.get(topic)
        if info is None or info.error is not None:
            missing = KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART)
            raise KafkaException(info.error if info else missing)
        return sorted(info.partitions)
    finally:
        probe.close()


class ClientStuck(Exception):
    """A client call overran its deadline and is still blocked inside librdkafka."""


def call_with_deadline(call: Callable[[], _T], seconds: float, what: str) -> _T:
    """``call()``, or ClientStuck once ``seconds`` pass; its own exceptions propagate.

    For the librdkafka calls whose own timeout is known not to hold (e.g.
    send_offsets_to_transaction, librdkafka #5456 and #5511). The call runs on a daemon
    thread, so a call that never returns cannot keep the process from exiting; the
    caller must abandon the client it was made on."""
    outcome: list[tuple[bool, Any]] = []
    finished = threading.Event()

    def run() -> None:
        try:
            outcome.append((True, call()))
        except Exception as exc:  # noqa: BLE001 - re-raised in the caller's thread
            outcome.append((False, exc))
        finally:
            finished.set()

    threading.Thread(target=run, name=f"deadline:{what}", daemon=True).start()
    if not finished.wait(seconds):
        raise ClientStuck(f"{what} did not return within {seconds:.0f}s")
    returned, value = outcome[0]
    if returned:
        result: _T = value
        return result
    raise value
