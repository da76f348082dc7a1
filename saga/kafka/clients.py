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
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
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
from confluent_kafka.admin import AdminClient

from saga.config import KafkaConnection
from saga.errors import ClientStuck, KafkaUnavailable, SagaError
from saga.errors import KafkaError as SagaKafkaError
from saga.kafka import security

_log = logging.getLogger("saga.kafka")
_T = TypeVar("_T")

_COMMON: dict[str, Any] = {
    "log.connection.close": False,
    "logger": _log,
}


#: Largest record kafka-saga writes, key, value and headers together: under librdkafka's
#: message.max.bytes (1,000,000), aiokafka's max_request_size (1 MiB) and the broker's
#: 1 MB default. A producer refuses a record past its limit for good, so every writer
#: measures what it builds from outside input (a dead letter, a reply) against this.
RECORD_LIMIT = 960 * 1024
#: What Kafka's record format adds to a record's key, value and headers, at most.
_RECORD_OVERHEAD = 64


def record_bytes(key: bytes | None, value: bytes | None,
                 headers: Sequence[tuple[str, bytes | str | None]] | None = None) -> int:
    """About what a record takes on the wire (never less)."""
    size = _RECORD_OVERHEAD + len(key or b"") + len(value or b"")
    for name, header in headers or ():
        size += 16 + len(name.encode()) + len(
            header.encode() if isinstance(header, str) else header or b"")
    return size


def producer(kafka: KafkaConnection, *, transactional_id: str | None = None,
             **extra: Any) -> Producer:
    config: dict[str, Any] = {
        **_COMMON,
        **security.librdkafka(kafka),
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


def admin(kafka: KafkaConnection, **extra: Any) -> AdminClient:
    """An admin client whose log lines go through Python logging like every other's."""
    return AdminClient({**_COMMON, **security.librdkafka(kafka), **extra})


def consumer(kafka: KafkaConnection, group_id: str, **extra: Any) -> Consumer:
    config: dict[str, Any] = {
        **_COMMON,
        **security.librdkafka(kafka),
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


#: How long an assignment waits for its topics' leaders before it is made all the same.
_METADATA_WAIT_S = 5.0


def assign(reader: Consumer, assignment: Sequence[TopicPartition]) -> None:
    """``reader.assign(assignment)``, once the leaders of its topics are known. A
    partition assigned before its leader is known, to start at a logical offset (the
    beginning, the end), waits out librdkafka's 500 ms offset-query timer before its
    first fetch: every catch-up from the start, rebuild and client wait paid it."""
    for topic in sorted({tp.topic for tp in assignment}):
        try:
            reader.list_topics(topic, timeout=_METADATA_WAIT_S)
        except KafkaException as exc:
            # Only a head start: without it the partitions are read all the same, later.
            _log.debug("the metadata of %s before assigning it: %s", topic, exc)
    reader.assign(list(assignment))


def read_to_end(kafka: KafkaConnection, topic: str, starts: Mapping[int, int | None], *,
                batch: int = 1000) -> Iterator[Message | EndOfPartition]:
    """Every committed record of ``topic`` from each partition's start (None: the
    beginning) to its end as of now; an EndOfPartition marks each partition's end."""
    if not starts:
        return
    reader = consumer(kafka, f"saga-reader-{uuid.uuid4().hex}",
                      **{"enable.partition.eof": True})
    try:
        assign(reader, [TopicPartition(topic, p, OFFSET_BEGINNING if o is None else o)
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


@dataclass(frozen=True)
class Record:
    """A consumed record, detached from the consumer."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]] | None


def read_records(kafka: KafkaConnection, topic: str) -> list[Record]:
    """Every committed record of ``topic`` with its position, start to end; none when
    the topic does not exist."""
    try:
        partitions = partitions_of(kafka, topic)
    except KafkaException as exc:
        if exc.args and isinstance(exc.args[0], KafkaError) and \
                exc.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
            return []
        raise
    out = [Record(*where(item)[1:], item.key(), item.value(), headers_of(item))
           for item in read_to_end(kafka, topic, dict.fromkeys(partitions))
           if not isinstance(item, EndOfPartition)]
    return sorted(out, key=lambda r: (r.partition, r.offset))


def headers_of(message: Message) -> list[tuple[str, bytes | None]] | None:
    raw = message.headers()  # a consumed record's headers are a list of (str, bytes)
    if raw is None:
        return None
    pairs = raw.items() if isinstance(raw, dict) else raw
    return [(k, v.encode() if isinstance(v, str) else v) for k, v in pairs]


# _DESTROY_BROKER: a request was in flight when librdkafka tore down the handle of a
# broker that went away (a broker restart); the next request goes to another.
_TRANSIENT = frozenset({KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN,
                        KafkaError._TIMED_OUT, KafkaError._RESOLVE, KafkaError._DESTROY_BROKER,
                        KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
                        KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_NOT_AVAILABLE,
                        KafkaError.COORDINATOR_LOAD_IN_PROGRESS})


def is_transient(error: KafkaError | KafkaException) -> bool:
    """An error the client recovers from by itself once brokers answer again."""
    if isinstance(error, KafkaException):
        cause = error.args[0] if error.args else None
        return isinstance(cause, KafkaError) and is_transient(cause)
    return not error.fatal() and (error.retriable() or error.code() in _TRANSIENT)


def while_kafka_recovers(step: Callable[[], _T], what: str, *, wait_s: float,
                         say: Callable[[str], None]) -> _T:
    """``step()``, tried again while the cluster answers with transient errors (a broker
    restarting, a request lost with the bootstrap connection librdkafka replaces by the
    broker it named), for up to ``wait_s``; ``say`` tells each retry."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return step()
        except (KafkaUnavailable, KafkaException, TimeoutError) as exc:
            transient = isinstance(exc, KafkaUnavailable | TimeoutError) \
                or is_transient(exc)
            if not transient or time.monotonic() >= deadline:
                raise
            say(f"{what}: Kafka is not ready ({exc}); trying again")
            time.sleep(2)


def watermarks(reader: Consumer, topic: str, partition: int, *, wait_s: float = 30
               ) -> tuple[int, int]:
    """(low, high) offsets of a partition, riding out a leader that is moving or not yet
    elected (a topic just created, a broker restarting)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            low, high = reader.get_watermark_offsets(TopicPartition(topic, partition), 10)
            return int(low), int(high)
        except KafkaException as exc:
            if not is_transient(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.2)


def offsets_past_end(kafka: KafkaConnection, topic: str, offsets: Mapping[int, int]
                     ) -> dict[int, int]:
    """The stored ``offsets`` (next to read, per partition) beyond the end of ``topic``:
    positions that belong to another cluster or another incarnation of the topic."""
    if not offsets:
        return {}
    probe = consumer(kafka, f"saga-meta-{uuid.uuid4().hex}")
    try:
        beyond = {}
        for partition, offset in offsets.items():
            _, high = watermarks(probe, topic, partition)
            if offset > high:
                beyond[partition] = offset
        return beyond
    finally:
        probe.close()


_AUTHENTICATION = frozenset({KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED,
                             KafkaError.UNSUPPORTED_SASL_MECHANISM, KafkaError._SSL})
_AUTHORIZATION = frozenset({KafkaError.TOPIC_AUTHORIZATION_FAILED,
                            KafkaError.GROUP_AUTHORIZATION_FAILED,
                            KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
                            KafkaError.CLUSTER_AUTHORIZATION_FAILED})


def as_saga_error(exc: KafkaException) -> SagaError:
    """A Kafka client error in our family, with a hint: transient ones are retryable."""
    cause = exc.args[0] if exc.args else None
    text = cause.str() if isinstance(cause, KafkaError) else str(exc)
    code = cause.code() if isinstance(cause, KafkaError) else None
    if code in _AUTHENTICATION:
        return SagaKafkaError(
            f"Kafka did not accept this client's credentials: {text}",
            hint="check SAGA_KAFKA_SECURITY_PROTOCOL, SAGA_KAFKA_SASL_MECHANISM, "
            "SAGA_KAFKA_SASL_USERNAME and SAGA_KAFKA_SASL_PASSWORD (or the certificate and "
            "SAGA_KAFKA_SSL_CA_FILE) against the cluster's listener")
    if code in _AUTHORIZATION:
        return SagaKafkaError(
            f"Kafka refused this principal: {text}",
            hint="its ACLs do not allow it (docs/security.md lists what each role needs; "
            "`saga acl apply` creates them), or the process runs as the wrong principal")
    if is_transient(exc):
        return KafkaUnavailable(f"Kafka did not answer: {text}",
                                hint="check that the cluster runs and SAGA_BOOTSTRAP_SERVERS "
                                "names it (`saga kafka status` for the embedded one), and "
                                "that SAGA_KAFKA_SECURITY_PROTOCOL matches its listener; then "
                                "run the command again")
    if isinstance(cause, KafkaError) and cause.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
        return SagaKafkaError(f"Kafka has no such topic: {text}",
                              hint="run `saga topics create`, and check SAGA_TOPIC_PREFIX")
    return SagaKafkaError(f"Kafka refused the request: {text}",
                          hint="see the message; check the cluster's configuration and ACLs")


def partitions_of(kafka: KafkaConnection, topic: str) -> list[int]:
    """The topic's partition numbers; KafkaException when it does not exist."""
    # A refused login only reaches the error callback; without it this would wait out
    # the whole timeout and then blame the transport.
    refused: list[KafkaError] = []
    probe = consumer(kafka, f"saga-meta-{uuid.uuid4().hex}",
                     error_cb=lambda e: refused.append(e) if e.code() in _AUTHENTICATION
                     else None)
    deadline = time.monotonic() + 30
    try:
        while True:
            try:
                info = probe.list_topics(topic, timeout=1).topics.get(topic)
                break
            except KafkaException as exc:
                if not is_transient(exc) or time.monotonic() >= deadline:
                    raise
            probe.poll(0)  # serves the error callback
            if refused:
                raise KafkaException(refused[0])
        if info is None or info.error is not None:
            missing = KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART)
            raise KafkaException(info.error if info else missing)
        return sorted(info.partitions)
    finally:
        probe.close()


#: Calls that overran their deadline, still blocked inside librdkafka.
_overran: set[threading.Thread] = set()


def stuck_calls() -> int:
    """How many calls abandoned by call_with_deadline are still blocked. Each holds the
    client it was made on, which is freed when (if) the call returns."""
    _overran.difference_update([t for t in _overran if not t.is_alive()])
    return len(_overran)


def call_with_deadline(call: Callable[[], _T], seconds: float, what: str) -> _T:
    """``call()``, or ClientStuck once ``seconds`` pass; its own exceptions propagate.

    For the librdkafka calls whose own timeout is known not to hold (e.g.
    send_offsets_to_transaction, librdkafka #5456 and #5511). The call runs on a daemon
    thread, so a call that never returns cannot keep the process from exiting; the
    caller must abandon the client it was made on (the thread keeps it alive until the
    call returns, then it is freed; ``stuck_calls`` counts those still blocked)."""
    outcome: list[tuple[bool, Any]] = []
    finished = threading.Event()

    def run() -> None:
        try:
            outcome.append((True, call()))
        except Exception as exc:  # noqa: BLE001 - re-raised in the caller's thread
            outcome.append((False, exc))
        finally:
            finished.set()

    thread = threading.Thread(target=run, name=f"deadline:{what}", daemon=True)
    thread.start()
    if not finished.wait(seconds):
        _overran.add(thread)
        raise ClientStuck(f"{what} did not return within {seconds:.0f}s")
    returned, value = outcome[0]
    if returned:
        result: _T = value
        return result
    raise value
