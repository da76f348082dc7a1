"""compose/docker-compose.yml brought up for real: three brokers, two coordinators, the
services and the visibility server; orders run through it while one coordinator is
killed; every order ends; and one saga is driven through the server's HTTP API from
outside the containers (start, signal, result, history), with the bearer token the
stack generated (a caller without it is refused)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from saga.config import Settings
from saga.coordinator.recovery import fold_journal
from saga.dev.audit import audit_commands
from saga.dev.embedded import free_port, wait_for_brokers
from saga.dev.stack import SERVICE_NAMES, Stack
from saga.engine.inputs import DeliverSignal, StartSaga
from saga.engine.lifecycle import SagaStatus
from saga.errors import SagaError
from saga.kafka.topics import admin_client, check_topics, load_specs
from tests.kafka_harness import docker_available, free_base_port, in_ci
from tests.system import order

COMPOSE_FILE = Path(__file__).resolve().parents[2] / "compose" / "docker-compose.yml"
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
    base = free_base_port(internal=True)
    return {**os.environ, "SAGA_IMAGE": image,
            "KAFKA_IMAGE": os.environ.get("SAGA_KAFKA_IMAGE", "apache/kafka:4.1.1"),
            **{f"KAFKA_PORT_{i + 1}": str(base + i) for i in range(3)},
            **{f"KAFKA_CONTROLLER_PORT_{i + 1}": str(base + 100 + i) for i in range(3)},
            # The secured variant's broker-to-broker listener (docker-compose.secure.yml).
            **{f"KAFKA_INTERNAL_PORT_{i + 1}": str(base + 200 + i) for i in range(3)},
            "SAGA_SERVER_PORT": str(free_port())}


@pytest.fixture
def stack_up(compose_env: dict[str, str], tmp_path: Path
             ) -> Iterator[tuple[str, dict[str, str]]]:
    project = f"saga{uuid.uuid4().hex[:8]}"
    compose_env = {**compose_env, "SAGA_SECRETS_DIR": str(tmp_path / "secrets")}

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
    admin = admin_client(settings.kafka)
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
    drive_one_through_the_api(f"http://127.0.0.1:{env['SAGA_SERVER_PORT']}", api_token(env))


def wait_until_ready(api: httpx.Client, seconds: float, what: str) -> None:
    """Until the server's /readyz answers 200; it refuses connections while it starts."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if api.get("/readyz").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"{what} never became ready"
        time.sleep(1)


def api_token(env: dict[str, str], wait_s: float = 120) -> str:
    """The operate token the stack's `api-token` one-shot wrote for the server."""
    token = Path(env["SAGA_SECRETS_DIR"]) / "api" / "operate.token"
    deadline = time.monotonic() + wait_s
    while not token.exists() or not token.read_text().strip():
        assert time.monotonic() < deadline, "the api-token container wrote no token"
        time.sleep(1)
    return token.read_text().strip()


def drive_one_through_the_api(url: str, token: str) -> None:
    """What a user outside the containers does: only HTTP, no Kafka client."""
    with httpx.Client(base_url=url, timeout=40) as anonymous:
        wait_until_ready(anonymous, 120, "the compose server")
        refused = anonymous.post("/api/sagas/nobody/cancel", json={})
        assert (refused.status_code, refused.json()["code"]) == (401, "unauthenticated")
    with httpx.Client(base_url=url, timeout=40,
                      headers={"authorization": f"Bearer {token}"}) as api:
        assert len(api.get("/api/sagas", params={"limit": 1000}).json()["sagas"]) == ORDERS
        started = api.post("/api/sagas", json={"type": "order", "id": "via-api",
                                               "input": order("via-api")})
        assert (started.status_code, started.json()["created"]) == (201, True), started.text
        deadline = time.monotonic() + 60
        while api.get("/api/sagas/via-api").json()["status"] != "WAITING":
            assert time.monotonic() < deadline, "via-api never waited for its pick"
            time.sleep(0.5)
        assert api.post("/api/sagas/via-api/signals/warehouse_picked",
                        json={"payload": {}}).status_code == 202
        done = api.get("/api/sagas/via-api/result", params={"wait": 60}).json()
        assert (done["status"], done["result"]["status"]) == ("COMPLETED", "completed")
        types = [h["type"] for h in api.get("/api/sagas/via-api/history").json()]
        assert (types[0], types[-1]) == ("SagaStarted", "SagaCompleted")
