"""compose/docker-compose.secure.yml laid over the stack, for real: three brokers with no
PLAINTEXT listener, every kafka-saga container authenticating as its role's SCRAM user
under least-privilege ACLs; orders sent from outside as the `client` user run to their
end, and what the client may not do is refused with a clear error."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import KafkaException

from saga.config import Secret, Settings
from saga.dev.embedded import wait_for_brokers
from saga.dev.stack import Stack
from saga.engine.inputs import DeliverSignal, StartSaga
from saga.kafka import clients
from tests.cli_helpers import run_saga
from tests.compose.test_compose_stack import (  # noqa: F401 - compose_env is a fixture
    COMPOSE_FILE,
    api_token,
    compose_env,
    wait_until_ready,
)
from tests.system import order

SECURE_FILE = COMPOSE_FILE.with_name("docker-compose.secure.yml")
ORDERS = 30


@pytest.fixture
def secure_up(compose_env: dict[str, str], tmp_path: Path  # noqa: F811 - the fixture
              ) -> Iterator[dict[str, str]]:
    project = f"sagasec{uuid.uuid4().hex[:8]}"
    env = {**compose_env, "SAGA_SECRETS_DIR": str(tmp_path / "secrets"),
           "COMPOSE_PROJECT_NAME": project}

    def compose(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["docker-compose", "-p", project, "-f", str(COMPOSE_FILE),
                               "-f", str(SECURE_FILE), *args], env=env,
                              capture_output=True, text=True, timeout=300, check=check)

    up = compose("up", "-d", check=False)
    try:
        assert up.returncode == 0, up.stderr[-3000:]
        yield env
    finally:
        logs = compose("logs", "--no-color", "--tail", "40", check=False).stdout
        compose("down", "-v", "--timeout", "5", check=False)
        print(logs[-8000:])


def _as_client(env: dict[str, str], state_dir: Path, password: str | None = None
               ) -> Settings:
    secrets = Path(env["SAGA_SECRETS_DIR"])
    return Settings(
        bootstrap_servers=",".join(f"127.0.0.1:{env[f'KAFKA_PORT_{i}']}" for i in (1, 2, 3)),
        partitions=6, replication_factor=3, state_dir=state_dir,
        kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="client",
        kafka_sasl_password=Secret(password if password is not None else
                                   (secrets / "users" / "client.password").read_text()),
        kafka_ssl_ca_file=str(secrets / "ca.pem"))


#: What each container may mount of the secrets folder: its own folder, nothing more.
OWN_SECRETS = {"kafka-1": ["containers/broker"], "kafka-2": ["containers/broker"],
               "kafka-3": ["containers/broker"], "topics": ["containers/admin"],
               "coordinator-1": ["containers/coordinator"],
               "coordinator-2": ["containers/coordinator"],
               **{name: [f"containers/service-{name}"] for name in
                  ("payments", "inventory", "shipping", "notifications", "ops")},
               "server": ["containers/server", "api"], "api-token": ["api"],
               "secrets": ["."]}


def _secret_mounts(env: dict[str, str]) -> dict[str, list[str]]:
    """Per container of the stack, the parts of the secrets folder it mounts."""
    root = Path(env["SAGA_SECRETS_DIR"]).resolve()
    project = env["COMPOSE_PROJECT_NAME"]
    listed = subprocess.run(["docker", "ps", "-a", "--filter", f"name={project}_",
                             "--format", "{{.Names}}"], capture_output=True, text=True,
                            check=True).stdout.split()
    mounts: dict[str, list[str]] = {}
    for name in listed:
        inspected = subprocess.run(["docker", "inspect", "--format", "{{json .Mounts}}", name],
                                   capture_output=True, text=True, check=True).stdout
        service = name.removeprefix(f"{project}_").rsplit("_", 1)[0]
        mounts[service] = sorted(
            str(Path(m["Source"]).resolve().relative_to(root))
            for m in json.loads(inspected)
            if Path(m["Source"]).resolve().is_relative_to(root))
    return mounts


def _sagas(api: httpx.Client) -> dict[str, Any]:
    try:
        response = api.get("/api/sagas", params={"limit": 1000})
    except httpx.HTTPError:
        return {}
    if response.status_code != 200:
        return {}
    return {s["saga_id"]: s["status"] for s in response.json()["sagas"]}


def test_orders_run_over_sasl_ssl_with_least_privilege_acls(secure_up: dict[str, str],
                                                            tmp_path: Path) -> None:
    env = secure_up
    password = Path(env["SAGA_SECRETS_DIR"]) / "users" / "client.password"
    deadline = time.monotonic() + 120
    while not password.exists():
        assert time.monotonic() < deadline, "the secrets container wrote no passwords"
        time.sleep(1)
    settings = _as_client(env, tmp_path / "client")
    wait_for_brokers(settings.bootstrap_servers, 3, 180, security=settings.kafka.security)

    url = f"http://127.0.0.1:{env['SAGA_SERVER_PORT']}"
    token = api_token(env)  # generated into the secrets folder, like the passwords
    with httpx.Client(base_url=url, timeout=30,
                      headers={"authorization": f"Bearer {token}"}) as api:
        # The server starts once `topics` created the topics, users and ACLs.
        wait_until_ready(api, 240, "the secured server")

        client = Stack(settings)
        ids = [f"sec-{n:02d}" for n in range(ORDERS)]
        for n, saga_id in enumerate(ids):
            client.send(saga_id, StartSaga("order", order(saga_id, "sku-rare" if n % 5 == 0
                                                          else "sku-1", qty=1)))
            client.send(saga_id, DeliverSignal("warehouse_picked", None))
        client.flush()

        deadline = time.monotonic() + 240
        while True:
            statuses = _sagas(api)
            ended = [i for i in ids if statuses.get(i) in ("COMPLETED", "COMPENSATED")]
            if len(ended) == ORDERS or time.monotonic() > deadline:
                break
            time.sleep(2)
    assert len(ended) == ORDERS, f"{ORDERS - len(ended)} orders did not end: {statuses}"
    assert sum(statuses[i] == "COMPENSATED" for i in ids) == ORDERS // 5

    # Each container was given only its own credential (and the server the API token).
    mounts = _secret_mounts(env)
    assert set(mounts) == set(OWN_SECRETS), mounts
    assert mounts == {name: sorted(own) for name, own in OWN_SECRETS.items()}

    # The client may write the inbox; it may not read a service's commands.
    with pytest.raises(KafkaException) as refused:
        clients.read_records(settings.kafka, settings.topic("payments.commands"))
    said = clients.as_saga_error(refused.value)
    assert "refused this principal" in said.message
    assert "saga acl apply" in (said.hint or "")
    # A wrong password is told apart from a missing right, and never shown.
    wrong = _as_client(env, tmp_path / "wrong", password="not-the-password-3141")
    result = run_saga(wrong, "dlq", "list", "--json", timeout=60)
    assert result.returncode == 2
    assert "did not accept this client's credentials" in result.stderr
    assert "not-the-password-3141" not in result.stdout + result.stderr
    # the API refuses a caller without the token
    anonymous = httpx.get(f"{url}/api/sagas", timeout=30)
    assert (anonymous.status_code, anonymous.json()["code"]) == (401, "unauthenticated")
