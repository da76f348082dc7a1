"""compose/docker-compose.yml brought up for real: three brokers, two coordinators, the
services; orders run through it while one coordinator is killed; every order ends."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from saga.audit import audit_commands, fold_journal
from saga.config import PROJECT_ROOT, Settings
from saga.engine.inputs import DeliverSignal, StartSaga
from saga.engine.lifecycle import SagaStatus
from saga.errors import SagaError
from saga.kafka.embedded import wait_for_brokers
from saga.kafka.topics import admin_client, check_topics, load_specs
from saga.stack import SERVICE_NAMES, Stack
from tests.kafka_harness import docker_available, in_ci
from tests.saga.kafka.test_embedded import _free_base_port
from tests.system import order

COMPOSE_FILE = PROJECT_ROOT / "compose" / "docker-compose.yml"
ORDERS = 200


@pytest.fixture
def compose_env() -> dict[str, str]:
    image = os.environ.get("SAGA_IMAGE")
    tool = shutil.which("docker-compose")
    if not (image and tool and docker_available()):
        message = ("the compose test needs a Docker engine, docker-compose and SAGA_IMAGE "
                   "(.ci/run builds it with compose/build-images.sh)")
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    base = _free_base_port()
    return {**os.environ, "SAGA_IMAGE": image,
            "KAFKA_IMAGE": os.environ.get("SAGA_KAFKA_IMAGE", "apache/kafka:4.1.1"),
            **{f"KAFKA_PORT_{i + 1}": str(base + i) for i in range(3)},
            **{f"KAFKA_CONTROLLER_PORT_{i + 1}": str(base + 100 + i) for i in range(3)}}


@pytest.fixture
def stack_up(compose_env: dict[str, str]) -> Iterator[tuple[str, dict[str, str]]]:
    project = f"saga{uuid.uuid4().hex[:8]}"

    def compose(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["docker-compose", "-p", project, "-f", str(COMPOSE_FILE),
                               *args], env=compose_env, capture_output=True, text=True,
                              timeout=300, check=check)

    compose("up", "-d")
    try:
        yield project, compose_env
    finally:
        logs = compose("logs", "--no-color", "--tail", "30", check=False).stdout
        compose("down", "-v", "--timeout", "5", check=False)
        print(logs[-6000:])


def test_orders_survive_a_killed_coordinator(stack_up: tuple[str, dict[str, str]],
                                             tmp_path: Path) -> None:
    project, env = stack_up
    bootstrap = ",".join(f"127.0.0.1:{env[f'KAFKA_PORT_{i}']}" for i in (1, 2, 3))
    wait_for_brokers(bootstrap, 3, 180)
    settings = Settings(bootstrap_servers=bootstrap, partitions=6, replication_factor=3,
                        state_dir=tmp_path)
    admin = admin_client(bootstrap)
    deadline = time.monotonic() + 120
    while True:
        try:
            if not check_topics(admin, load_specs(settings)):
                break
        except SagaError:  # brokers still electing leaders
            pass
        assert time.monotonic() < deadline, "the topics container never created the topics"
        time.sleep(1)

    client = Stack(settings)
    ids = [f"c-{n:03d}" for n in range(ORDERS)]
    for n, saga_id in enumerate(ids):
        client.send(saga_id, StartSaga("order", {**order(saga_id, "sku-rare" if n % 5 == 0
                                                         else "sku-1", qty=1),
                                                 "pick_timeout_s": 5}))
        if n % 3:
            client.send(saga_id, DeliverSignal("warehouse_picked", None))
        if n == ORDERS // 2:
            client.flush()
            killed = subprocess.run(
                ["docker-compose", "-p", project, "-f", str(COMPOSE_FILE), "kill",
                 "coordinator-1"], env=env, capture_output=True, text=True, timeout=60,
                check=False)
            assert killed.returncode == 0, killed.stderr
    client.flush()

    deadline = time.monotonic() + 240
    while True:
        states = fold_journal(settings)
        ended = [i for i in ids if i in states and states[i].terminal]
        if len(ended) == ORDERS or time.monotonic() > deadline:
            break
        time.sleep(3)
    assert len(ended) == ORDERS, f"{ORDERS - len(ended)} orders did not end"
    assert sum(states[i].status is SagaStatus.COMPENSATED for i in ids) == ORDERS // 5
    assert all(states[i].status in (SagaStatus.COMPLETED, SagaStatus.COMPENSATED) for i in ids)
    assert audit_commands(settings, SERVICE_NAMES).duplicates == {}
