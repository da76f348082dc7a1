"""The embedded broker: real JVMs from Maven Central jars, driven through the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from saga.dev.embedded import dev_jvm_opts
from tests.kafka_harness import free_base_port

pytestmark = pytest.mark.embedded


def _saga(state: Path, port: int, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SAGA_STATE_DIR": str(state), "SAGA_KAFKA_PORT": str(port)}
    env.pop("SAGA_BOOTSTRAP_SERVERS", None)
    return subprocess.run([sys.executable, "-m", "saga.cli.main", *args], env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def _round_trip(bootstrap: str, replication: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topic = f"embedded-rt-{replication}"
    config = {"min.insync.replicas": "2"} if replication == 3 else {}
    admin.create_topics([NewTopic(topic, 3, replication, config=config)])[topic].result(30)
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all",
                         "enable.idempotence": True})
    for i in range(30):
        producer.produce(topic, key=str(i).encode(), value=f"v{i}".encode())
    assert producer.flush(30) == 0
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"g-{topic}",
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    got: set[bytes] = set()
    deadline = time.monotonic() + 60
    while len(got) < 30 and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        value = message.value() if message is not None and message.error() is None else None
        if value is not None:
            got.add(value)
    consumer.close()
    assert got == {f"v{i}".encode() for i in range(30)}
    described = admin.list_topics(topic, timeout=10).topics[topic]
    assert {len(p.replicas) for p in described.partitions.values()} == {replication}


def _pids_alive(status: dict[str, object]) -> list[int]:
    nodes = status["nodes"]
    assert isinstance(nodes, list)
    return [n["pid"] for n in nodes if Path(f"/proc/{n['pid']}").exists()
            and b"kafka.Kafka" in Path(f"/proc/{n['pid']}/cmdline").read_bytes()]


@pytest.mark.parametrize("brokers", [1, 3])
def test_embedded_cluster_starts_serves_and_stops(tmp_path: Path, brokers: int) -> None:
    port = free_base_port()
    started = _saga(tmp_path, port, "kafka", "start", "--brokers", str(brokers))
    assert started.returncode == 0, started.stderr
    bootstrap = started.stdout.strip()
    assert bootstrap == ",".join(f"127.0.0.1:{port + i}" for i in range(brokers))
    try:
        status = json.loads(_saga(tmp_path, port, "kafka", "status", "--json").stdout)
        assert status["running"] is True
        assert status["brokers"] == brokers
        assert len(_pids_alive(status)) == brokers
        # each node says which JIT it runs (the bench refuses a broker without its own)
        for node in status["nodes"]:
            assert node["jvm_opts"] == dev_jvm_opts()
            started_with = Path(f"/proc/{node['pid']}/cmdline").read_bytes().split(b"\0")
            assert all(o.encode() in started_with for o in node["jvm_opts"])

        again = _saga(tmp_path, port, "kafka", "start", "--brokers", str(brokers))
        assert again.returncode == 0
        assert again.stdout.strip() == bootstrap
        status_again = json.loads(_saga(tmp_path, port, "kafka", "status", "--json").stdout)
        assert [n["pid"] for n in status_again["nodes"]] == [n["pid"] for n in status["nodes"]]

        other = _saga(tmp_path, port, "kafka", "start", "--brokers", str(4 - brokers))
        assert other.returncode == 2
        assert "saga kafka stop" in other.stderr

        _round_trip(bootstrap, replication=brokers)
    finally:
        stopped = _saga(tmp_path, port, "kafka", "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert _pids_alive(status) == []
    after = _saga(tmp_path, port, "kafka", "status", "--json")
    assert after.returncode == 1
    assert json.loads(after.stdout)["running"] is False


def test_missing_java_says_what_to_install(tmp_path: Path) -> None:
    env = {**os.environ, "SAGA_STATE_DIR": str(tmp_path), "PATH": str(tmp_path / "empty")}
    result = subprocess.run([sys.executable, "-m", "saga.cli.main", "kafka", "start"],
                            env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert "Java 17 or newer is needed" in result.stderr
    assert "apt-get install openjdk-17-jre-headless" in result.stderr


def test_cluster_ids_never_look_like_options() -> None:
    from saga.dev.embedded import new_cluster_id

    ids = [new_cluster_id() for _ in range(2000)]
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)
    assert len(set(ids)) == len(ids)
