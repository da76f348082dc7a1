"""The coordinator rides through the loss of its group coordinator broker.

With the broker that coordinates the consumer group down for longer than a session, the
consumer loses its partitions and rejoins, and librdkafka's send_offsets_to_transaction
can block for good on the coordinator it cached (librdkafka #5456, #5511). The
coordinator must give up that producer, fence it with a new one and go on, not hang or
exit and wait for a supervisor."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from saga.config import Settings
from saga.dev.audit import audit_commands
from saga.dev.embedded import EmbeddedKafka
from saga.dev.stack import SERVICE_NAMES, Stack
from saga.engine.inputs import DeliverSignal, StartSaga
from saga.engine.lifecycle import SagaStatus
from saga.kafka.topics import admin_client, create_topics, load_specs
from tests.system import STOCK, order, wait_terminal

pytestmark = pytest.mark.embedded

#: What the coordinator logs when librdkafka wedged (it does not every time).
WEDGED = "replacing the transactional producer"


def _orders(stack: Stack, prefix: str, count: int) -> list[str]:
    ids = [f"{prefix}-{n:03d}" for n in range(count)]
    for saga_id in ids:
        stack.send(saga_id, StartSaga("order", order(saga_id)))
        stack.send(saga_id, DeliverSignal("warehouse_picked", None))
    stack.flush()
    return ids


def _group_coordinator(bootstrap: str, group: str) -> int:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for _ in range(5):  # the first asks can time out while the group settles
        future = admin.describe_consumer_groups([group], request_timeout=10)[group]
        try:
            node_id: int = future.result(15).coordinator.id
            return node_id
        except (KafkaException, TimeoutError):
            continue
    raise AssertionError(f"no coordinator found for group {group}")


def test_coordinator_survives_losing_its_group_coordinator(
        cluster: tuple[EmbeddedKafka, str], tmp_path: Path) -> None:
    kafka, bootstrap = cluster
    settings = Settings(bootstrap_servers=bootstrap, state_dir=tmp_path / "state",
                        topic_prefix="restart.", partitions=3, replication_factor=3)
    create_topics(admin_client(settings.kafka), load_specs(settings))
    stack = Stack(settings, stock=STOCK)
    stack.start_all(("c1",))
    try:
        before = _orders(stack, "before", 20)
        wait_terminal(stack, before, 120)
        node = _group_coordinator(bootstrap, "restart.saga-coordinator")
        kafka.kill_node(node)
        time.sleep(15)  # longer than session.timeout.ms (10 s)
        during = _orders(stack, "during", 20)
        kafka.start(3)
        after = _orders(stack, "after", 20)
        states = wait_terminal(stack, before + during + after, 180)
        crashed = stack.dead()
        log = stack.log_tail("coordinator-c1", 400)
    finally:
        stack.stop_all()
    audit = audit_commands(settings, SERVICE_NAMES)
    print(f"\ngroup coordinator: broker {node}; producer replaced: {WEDGED in log}; "
          f"commands {len(audit.commands)}")
    assert crashed == []
    assert all(states[i].status is SagaStatus.COMPLETED for i in before + during + after)
    assert audit.duplicates == {}
