"""The order saga over SASL_SSL on a cluster that enforces ACLs: the embedded cluster
started --secure, one SCRAM principal per role with only the ACLs `saga acl apply`
gives it, and each principal refused what its role must not do, with a clear error."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import KafkaError, KafkaException

from saga.codec.origin import OriginKeys, encoded_service_key, new_origin_key
from saga.config import Secret, Settings
from saga.dev.embedded import EmbeddedKafka, users
from saga.dev.stack import Stack
from saga.engine import events as ev
from saga.engine.ids import timer_id
from saga.engine.inputs import CommandReply, DeliverSignal, FireTimer, ReplyOutcome, StartSaga
from saga.engine.lifecycle import SagaStatus
from saga.kafka import clients, headers
from saga.kafka.records import RecordCodec
from saga.kafka.topics import admin_client, create_topics, load_specs, service_names
from tests.cli_helpers import run_saga
from tests.kafka_harness import free_base_port
from tests.saga.server.test_api import ready
from tests.secure_kafka import as_user, principal_of, secure_cluster, with_roles
from tests.system import STOCK, order, wait_for, wait_terminal

pytestmark = pytest.mark.embedded


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedKafka]:
    with secure_cluster(tmp_path_factory.mktemp("secure")) as kafka:
        yield kafka


@pytest.fixture(scope="module")
def base(cluster: EmbeddedKafka, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return with_roles(cluster, tmp_path_factory.mktemp("state"), "sec.")


def test_the_order_saga_runs_over_sasl_ssl_each_process_as_its_role(
        cluster: EmbeddedKafka, base: Settings) -> None:
    client = as_user(cluster, base, "client")
    stack = Stack(client, stock=STOCK, process_env=_with_origin_keys(cluster, base))
    stack.start_all(["c1"])
    server = stack.start(stack.add_server("sec").name)
    ids = [f"sec-{n}" for n in range(4)]
    try:
        url = ready(stack, server.name)
        for n, saga_id in enumerate(ids):
            stack.send(saga_id, StartSaga("order", order(saga_id, "sku-rare" if n == 0
                                                         else "sku-1")))
            stack.send(saga_id, DeliverSignal("warehouse_picked", None))
        stack.flush()
        states = wait_terminal(stack, ids)
        seen = {i: httpx.get(f"{url}/api/sagas/{i}/result", params={"wait": 30},
                             timeout=40).json()["status"] for i in ids}
        dead = stack.dead()
    finally:
        stack.stop_all()

    assert dead == []
    assert states["sec-0"].status is SagaStatus.COMPENSATED
    assert all(states[i].status is SagaStatus.COMPLETED for i in ids[1:])
    assert seen == {i: s.status.value for i, s in states.items() if s.status and i in ids}
    # No password of any principal in any process's log.
    secrets = [as_user(cluster, base, u).kafka_sasl_password.reveal() for u in users()]
    for log in stack.log_dir.glob("*.log"):
        text = log.read_text(errors="replace")
        assert not [s for s in secrets if s in text], log.name


ORIGIN_KEY = new_origin_key()


def _with_origin_keys(cluster: EmbeddedKafka, base: Settings) -> Any:
    """Each process as its role's principal; the coordinator holds the origin key, each
    service only its own reply key (docs/security.md, Who wrote a reply)."""
    def principal(process: str) -> dict[str, str]:
        env = as_user(cluster, base, principal_of(process)).child_env()
        if process.startswith("coordinator"):
            env["SAGA_ORIGIN_KEY"] = ORIGIN_KEY
        elif process.startswith("service-"):
            env["SAGA_REPLY_KEY"] = encoded_service_key(ORIGIN_KEY,
                                                        process.removeprefix("service-"))
        return env
    return principal


def test_a_forged_reply_or_timer_counts_for_nothing_whoever_writes_it(
        cluster: EmbeddedKafka, base: Settings) -> None:
    """The client role and another service may both write saga.inbox: neither can
    answer payments' step nor time it out. The real reply still decides it."""
    client = as_user(cluster, base, "client")
    stack = Stack(client, stock=STOCK, process_env=_with_origin_keys(cluster, base))
    stack.start(stack.add_coordinator("forge").name)
    for name in service_names():
        if name != "payments":  # the step waits on payments while the forgers try
            stack.start(stack.add_service(name).name)
    saga_id, inbox = "forge-1", base.topic("saga.inbox")
    codec = RecordCodec()
    try:
        stack.send(saga_id, StartSaga("order", order(saga_id)))
        stack.flush()
        wait_for(lambda: 0 in getattr(stack.states().get(saga_id), "steps", {}), 60,
                 "the charge to be issued")
        charge = f"{saga_id}:0:1"
        forged_ok = codec.encode_inbox(saga_id, CommandReply(
            charge, "payments", ReplyOutcome.OK, {"charge_id": "forged"}, ""))
        as_inventory = OriginKeys.parse(reply_key=encoded_service_key(ORIGIN_KEY, "inventory"))
        own_reply = codec.encode_inbox(saga_id, CommandReply(
            charge, "inventory", ReplyOutcome.BUSINESS_ERROR, None, "card_declined"))
        timeout = codec.encode_inbox(saga_id, FireTimer(
            timer_id(saga_id, 0, ev.TimerPurpose.TIMEOUT, 1), 0))
        forgeries = [
            (client, forged_ok, None),  # User:client, no key
            (client, timeout, None),  # User:client fires the step's deadline
            # User:service-inventory, naming payments, with inventory's own key
            (as_user(cluster, base, "service-inventory"), forged_ok,
             as_inventory.tag_reply("inventory", inbox, forged_ok)),
            # ... and naming itself, tagged as it may: not the service the step called
            (as_user(cluster, base, "service-inventory"), own_reply,
             as_inventory.tag_reply("inventory", inbox, own_reply)),
        ]
        for principal, value, mac in forgeries:
            producer = clients.producer(principal.kafka)
            producer.produce(inbox, value, saga_id.encode(),
                             headers=[] if mac is None else [(headers.ORIGIN_MAC, mac)])
            assert producer.flush(30) == 0

        def letters() -> list[str]:
            return [codec.decode_dead_letter(r.value)["reason"]
                    for r in clients.read_records(client.kafka, base.topic("saga.dlq"))
                    if r.key == saga_id.encode()]
        wait_for(lambda: len(letters()) == 4, 60, "four dead letters")
        assert sorted(letters()) == ["reply_from_other_service", "unproven_origin",
                                     "unproven_origin", "unproven_origin"]
        step = stack.states()[saga_id].steps[0]
        assert step.outcome is None  # still waiting on the real payments

        stack.start(stack.add_service("payments").name)
        stack.send(saga_id, DeliverSignal("warehouse_picked", None))
        stack.flush()
        states = wait_terminal(stack, [saga_id])
        dead = stack.dead()
    finally:
        stack.stop_all()
    assert dead == []
    assert states[saga_id].status is SagaStatus.COMPLETED
    assert states[saga_id].steps[0].result != {"charge_id": "forged"}


def _produce_error(settings: Settings, topic: str) -> KafkaError | None:
    producer = clients.producer(settings.kafka)
    errors: list[KafkaError | None] = []
    producer.produce(topic, b"{}", key=b"k", on_delivery=lambda e, _: errors.append(e))
    producer.flush(30)
    return errors[0] if errors else None


def test_each_principal_is_refused_what_its_role_must_not_do(
        cluster: EmbeddedKafka, base: Settings) -> None:
    payments = as_user(cluster, base, "service-payments")
    client = as_user(cluster, base, "client")
    server = as_user(cluster, base, "server")
    journal, inbox = base.topic("saga.journal"), base.topic("saga.inbox")

    # A service cannot write the journal, nor another service's commands.
    for topic in (journal, base.topic("inventory.commands")):
        error = _produce_error(payments, topic)
        assert error is not None, topic
        assert error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    # A client writes the inbox, and nothing else; it cannot read a command topic.
    assert _produce_error(client, inbox) is None
    error = _produce_error(client, journal)
    assert error is not None
    assert error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    with pytest.raises(KafkaException) as refused:
        clients.read_records(client.kafka, base.topic("payments.commands"))
    said = clients.as_saga_error(refused.value)
    assert "refused this principal" in said.message
    assert "saga acl apply" in (said.hint or "")
    # The visibility server reads the journal but cannot write it.
    error = _produce_error(server, journal)
    assert error is not None
    assert error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_a_wrong_password_is_said_at_once_and_never_shown(
        cluster: EmbeddedKafka, base: Settings, tmp_path: Path) -> None:
    wrong = as_user(cluster, base, "client").with_(
        kafka_sasl_password=Secret("not-the-password-5150"))
    result = run_saga(wrong, "dlq", "list", "--json", timeout=60)
    assert result.returncode == 2
    assert "did not accept this client's credentials" in result.stderr
    assert "SAGA_KAFKA_SASL_PASSWORD" in result.stderr
    assert "not-the-password-5150" not in result.stdout + result.stderr
    # Nor does a plaintext client get anywhere: the listener speaks only SASL_SSL.
    plain = base.with_(kafka_security_protocol="PLAINTEXT")
    result = run_saga(plain, "dlq", "list", "--json", timeout=90)
    assert result.returncode == 2
    assert "SAGA_KAFKA_SECURITY_PROTOCOL" in result.stderr


def test_three_secured_brokers_replicate_over_tls_and_take_new_scram_users(
        tmp_path: Path) -> None:
    kafka = EmbeddedKafka(tmp_path / "kafka", base_port=free_base_port(internal=True))
    kafka.start(3, secure=True)
    try:
        settings = Settings(bootstrap_servers=kafka.bootstrap_servers() or "",
                            state_dir=tmp_path / "state", topic_prefix="sec3.",
                            partitions=3, replication_factor=3)
        admin = as_user(kafka, settings, "admin")
        create_topics(admin_client(admin.kafka), load_specs(admin))
        # Every replica in sync: the brokers reach each other on the mTLS listener.
        described = admin_client(admin.kafka).list_topics(admin.topic("saga.journal"),
                                                          timeout=30)
        partitions = described.topics[admin.topic("saga.journal")].partitions.values()
        assert len(partitions) == 3
        assert all(sorted(p.isrs) == [1, 2, 3] for p in partitions)

        # A user the storage was not formatted with, given a password by `saga acl
        # user`: it authenticates, and holds no right until an ACL gives it one.
        (tmp_path / "late.password").write_text("late-user-password-2718\n")
        made = run_saga(admin, "acl", "user", "late-user", "--password-file",
                        str(tmp_path / "late.password"), "--json")
        assert made.returncode == 0, made.stderr
        assert "late-user-password-2718" not in made.stdout + made.stderr
        client = kafka.security_for("client")
        assert client is not None
        late = settings.with_security(replace(client, sasl_username="late-user",
                                              sasl_password=Secret("late-user-password-2718")))
        with pytest.raises(KafkaException) as refused:
            clients.read_records(late.kafka, settings.topic("saga.journal"))
        assert "refused this principal" in clients.as_saga_error(refused.value).message
    finally:
        kafka.stop()
