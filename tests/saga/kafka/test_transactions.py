"""The exactly-once building block the coordinator stands on, on a real broker."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from confluent_kafka import Consumer, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def _topic(admin: AdminClient, name: str, partitions: int = 1) -> str:
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result(30)
    return name


def _drain(consumer: Consumer, expected: int, timeout_s: float = 20) -> list[bytes]:
    values: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is None:
            if len(values) >= expected:
                break
            continue
        assert message.error() is None, message.error()
        value = message.value()
        assert value is not None
        values.append(value)
    return values


def test_read_committed_never_sees_an_aborted_transaction(
        kafka_bootstrap: str, admin: AdminClient, unique_name: Callable[[str], str]) -> None:
    topic = _topic(admin, unique_name("txn"))
    producer = Producer({"bootstrap.servers": kafka_bootstrap,
                         "transactional.id": unique_name("txid")})
    producer.init_transactions(30)
    producer.begin_transaction()
    for i in range(5):
        producer.produce(topic, key=b"k", value=f"committed-{i}".encode())
    producer.commit_transaction(30)
    producer.begin_transaction()
    for i in range(5):
        producer.produce(topic, key=b"k", value=f"aborted-{i}".encode())
    producer.flush(30)  # the aborted records really reach the log
    producer.abort_transaction(30)
    producer.begin_transaction()
    producer.produce(topic, key=b"k", value=b"after-abort")
    producer.commit_transaction(30)

    committed = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": unique_name("g"),
                          "auto.offset.reset": "earliest", "isolation.level": "read_committed"})
    uncommitted = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": unique_name("g"),
                            "auto.offset.reset": "earliest",
                            "isolation.level": "read_uncommitted"})
    try:
        committed.subscribe([topic])
        uncommitted.subscribe([topic])
        seen = _drain(committed, 6)
        raw = _drain(uncommitted, 11)
    finally:
        committed.close()
        uncommitted.close()
    assert seen == [f"committed-{i}".encode() for i in range(5)] + [b"after-abort"]
    # The aborted records are in the log; only isolation keeps them out.
    assert sorted(raw) == sorted(seen + [f"aborted-{i}".encode() for i in range(5)])


def test_consume_transform_produce_commits_offsets_atomically(
        kafka_bootstrap: str, admin: AdminClient, unique_name: Callable[[str], str]) -> None:
    source = _topic(admin, unique_name("src"))
    sink = _topic(admin, unique_name("sink"))
    group = unique_name("group")
    seed = Producer({"bootstrap.servers": kafka_bootstrap})
    for i in range(10):
        seed.produce(source, value=str(i).encode())
    seed.flush(30)

    def run_once(commit: bool) -> int:
        consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group,
                             "auto.offset.reset": "earliest", "enable.auto.commit": False,
                             "isolation.level": "read_committed"})
        producer = Producer({"bootstrap.servers": kafka_bootstrap,
                             "transactional.id": f"{group}-worker"})
        producer.init_transactions(30)
        consumer.subscribe([source])
        batch: list[Message] = []
        deadline = time.monotonic() + 20
        while len(batch) < 10 and time.monotonic() < deadline:
            batch.extend(m for m in consumer.consume(10, 0.5) if m.error() is None)
        producer.begin_transaction()
        for message in batch:
            producer.produce(sink, value=b"out-" + (message.value() or b""))
        partition, offset = batch[-1].partition(), batch[-1].offset()
        assert partition is not None
        assert offset is not None
        producer.send_offsets_to_transaction(
            [TopicPartition(source, partition, offset + 1)],
            consumer.consumer_group_metadata(), 30)
        if commit:
            producer.commit_transaction(30)
        else:
            producer.abort_transaction(30)
        consumer.close()
        return len(batch)

    assert run_once(commit=False) == 10  # aborted: neither output nor offsets stick
    assert run_once(commit=True) == 10  # so the same ten records come back

    reader = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": unique_name("g"),
                       "auto.offset.reset": "earliest", "isolation.level": "read_committed"})
    try:
        reader.subscribe([sink])
        out = _drain(reader, 10)
    finally:
        reader.close()
    assert out == [f"out-{i}".encode() for i in range(10)]
    check = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group})
    try:
        [position] = check.committed([TopicPartition(source, 0)], timeout=10)
    finally:
        check.close()
    assert position.offset == 10


def test_fetching_committed_offsets_waits_out_an_open_transaction(
        kafka_bootstrap: str, admin: AdminClient, unique_name: Callable[[str], str]) -> None:
    """What makes a new owner safe from a paused old one (KIP-447): a read_committed
    consumer's committed() is answered only once a transaction holding offsets for the
    partition ends, so the journal it then catches up on is complete."""
    source = _topic(admin, unique_name("src"))
    group = unique_name("group")
    seed = Producer({"bootstrap.servers": kafka_bootstrap})
    seed.produce(source, value=b"x")
    seed.flush(30)
    owner = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group,
                      "auto.offset.reset": "earliest", "enable.auto.commit": False,
                      "isolation.level": "read_committed"})
    producer = Producer({"bootstrap.servers": kafka_bootstrap,
                         "transactional.id": unique_name("txid")})
    producer.init_transactions(30)
    owner.subscribe([source])
    deadline = time.monotonic() + 20
    while not owner.assignment() and time.monotonic() < deadline:
        owner.poll(0.2)
    producer.begin_transaction()
    producer.send_offsets_to_transaction([TopicPartition(source, 0, 1)],
                                         owner.consumer_group_metadata(), 30)
    finisher = threading.Timer(3.0, lambda: producer.commit_transaction(30))
    finisher.start()
    newcomer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group,
                         "isolation.level": "read_committed"})
    try:
        began = time.monotonic()
        [position] = newcomer.committed([TopicPartition(source, 0)], timeout=30)
        waited = time.monotonic() - began
    finally:
        finisher.join()
        newcomer.close()
        owner.close()
    assert position.offset == 1  # the offset the transaction committed, not the one before
    assert waited >= 2.5, f"committed() answered after {waited:.2f}s, while it was open"
