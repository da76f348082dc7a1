"""No principal can break what another owns (issue 19), shown on the secured embedded
cluster with each attack made from outside, by a Kafka producer of the principal that
may make it:

- the client role (which may write saga.inbox) sends records whose dead letter or
  re-routed copy Kafka would refuse: a 520 KB key, saga ids over the limit, a record
  at the broker's limit with no key. Before, the coordinator's produce raised
  MSG_SIZE_TOO_LARGE, it exited, and so did every instance that took the partition.
- a service (which may write saga.dlq) forges dead letters naming saga.journal and
  another service's command topic; an operator who redrives them must not write there.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from saga.config import Settings
from saga.dev.embedded import EmbeddedKafka
from saga.dev.stack import Stack
from saga.engine import events as ev
from saga.engine.ids import MAX_SAGA_ID_BYTES
from saga.engine.inputs import DeliverSignal, StartSaga
from saga.engine.lifecycle import SagaStatus
from saga.kafka import clients, headers
from saga.kafka.records import RecordCodec
from tests.cli_helpers import run_saga
from tests.secure_kafka import as_user, each_as_its_role, secure_cluster, with_roles
from tests.system import STOCK, order, wait_for, wait_terminal

pytestmark = pytest.mark.embedded

CODEC = RecordCodec()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedKafka]:
    with secure_cluster(tmp_path_factory.mktemp("attacks")) as kafka:
        yield kafka


@pytest.fixture(scope="module")
def base(cluster: EmbeddedKafka, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return with_roles(cluster, tmp_path_factory.mktemp("state"), "atk.",
                      roles=("coordinator", "client"))


def letters(settings: Settings) -> list[tuple[clients.Record, dict[str, Any]]]:
    return [(r, CODEC.decode_dead_letter(r.value))
            for r in clients.read_records(settings.kafka, settings.topic("saga.dlq"))]


def test_the_client_role_cannot_stop_the_coordinator_with_a_record_kafka_would_refuse(
        cluster: EmbeddedKafka, base: Settings) -> None:
    client = as_user(cluster, base, "client")
    inbox = base.topic("saga.inbox")
    stack = Stack(client, stock=STOCK, process_env=each_as_its_role(cluster, base))
    stack.start_all(["c1"])
    long_id, huge_id = "L" * (MAX_SAGA_ID_BYTES + 1), "H" * (520 * 1024)
    attacks: list[tuple[bytes | None, bytes, list[tuple[str, str | bytes | None]]]] = [
        # a 520 KB key on another saga's signal: its letter held the key twice (1 MB+)
        (b"k" * (520 * 1024), CODEC.encode_inbox("atk-x", DeliverSignal("go", None)), []),
        # a saga id just over the limit, keyed by itself
        (long_id.encode(), CODEC.encode_inbox(long_id, StartSaga("order", {})), []),
        # a 520 KB saga id with no key: sent home it was a 1 MB+ record
        (None, CODEC.encode_inbox(huge_id, StartSaga("order", {})), []),
        # a record at the broker's limit with no key: its copy, keyed, is over
        # librdkafka's 1,000,000-byte message.max.bytes
        (None, CODEC.encode_inbox("atk-h", StartSaga("order", order("atk-h"))),
         [("padding", b"p" * 999_900)]),
    ]
    try:
        first = [f"atk-{n}" for n in range(3)]
        for saga_id in first:
            stack.send(saga_id, StartSaga("order", order(saga_id)))
        stack.flush()
        bigger: dict[str, Any] = {"message.max.bytes": 1_040_000}  # the broker takes it
        attacker = clients.producer(client.kafka, **bigger)
        for key, value, record_headers in attacks:
            attacker.produce(inbox, value, key, headers=record_headers)
        # and a plain start with no key, which the coordinator sends home as its role
        # may (it writes the inbox: re-routed inputs, fired timers, children)
        attacker.produce(inbox, CODEC.encode_inbox("atk-r", StartSaga("order", order("atk-r"))))
        assert attacker.flush(30) == 0
        later = [f"atk-{n}" for n in range(3, 6)]
        for saga_id in later:
            stack.send(saga_id, StartSaga("order", order(saga_id)))
        for saga_id in first + later:
            stack.send(saga_id, DeliverSignal("warehouse_picked", None))
        stack.flush()
        states = wait_terminal(stack, first + later, timeout_s=120)
        wait_for(lambda: "atk-r" in stack.states(), 60, "the re-routed start")
        wait_for(lambda: len(letters(client)) >= len(attacks), 60, "every attack's letter")
        found = letters(client)
        dead = stack.dead()
        log = stack.log_tail("coordinator-c1", 400)
    finally:
        stack.stop_all()

    assert dead == [], "\n".join(dead)
    assert all(states[i].status is SagaStatus.COMPLETED for i in first + later)
    assert "atk-h" not in states
    reasons = sorted(letter["reason"] for _, letter in found)
    assert reasons == ["key_mismatch", "record_refused", "saga_id_too_long",
                       "saga_id_too_long"]
    for record, letter in found:
        size = clients.record_bytes(record.key, record.value, record.headers)
        assert size < 20_000, (letter["reason"], size)
        assert letter["component"] == "coordinator"
        assert letter["source_topic"] == inbox
    by_reason = {letter["reason"]: letter for _, letter in found}
    assert [(c["field"], c["size"]) for c in by_reason["key_mismatch"]["cut"]] == [
        ("key", 520 * 1024)]
    assert "Message size too large" in by_reason["record_refused"]["detail"]
    assert "is dead-lettered instead" in log


def test_a_letter_forged_by_a_service_is_not_redriven_where_it_says(
        cluster: EmbeddedKafka, base: Settings) -> None:
    admin = as_user(cluster, base, "admin")  # the operator: may write every topic
    client = as_user(cluster, base, "client")
    payments = as_user(cluster, base, "service-payments")
    journal, dlq = base.topic("saga.journal"), base.topic("saga.dlq")
    stack = Stack(client, process_env=each_as_its_role(cluster, base))
    stack.start(stack.add_coordinator("c2").name)
    try:
        # A real letter: garbage a client sent to the inbox, set aside by the coordinator.
        stack.send_raw(b"redrive-me", b"\x00 garbage")
        stack.flush()
        wait_for(lambda: any(r.key == b"redrive-me" for r, _ in letters(client)), 60,
                 "the coordinator's letter")
        # Forged by User:service-payments, which may write saga.dlq.
        victim = CODEC.encode_entry(ev.Entry("victim", 0, 1, ev.SagaStarted("order", 1, {})))
        inventory_command = base.topic("inventory.commands")
        forged = [
            (journal, "service:payments", b"forged-journal"),
            (inventory_command, "service:payments", b"forged-command"),
            (journal, "coordinator", b"forged-as-coordinator"),
        ]
        forger = clients.producer(payments.kafka)
        for topic, component, key in forged:
            forger.produce(dlq, CODEC.encode_dead_letter(
                topic=topic, partition=0, offset=0, key=key, value=victim,
                reason="undecodable", detail="please redrive me", component=component), key)
        assert forger.flush(30) == 0
        mine = {b"redrive-me", *(key for _, _, key in forged)}
        wait_for(lambda: {r.key for r, _ in letters(client)} >= mine, 60, "the forged letters")
        ids = {r.key: f"{r.partition}:{r.offset}" for r, _ in letters(client) if r.key in mine}

        done = run_saga(admin, "dlq", "redrive", *ids.values(), "--json")
        shown = run_saga(admin, "dlq", "redrive", ids[b"forged-journal"])
        dead = stack.dead()
    finally:
        stack.stop_all()

    assert dead == []
    assert done.returncode == 1, done.stderr  # a refusal is a finding
    answer = json.loads(done.stdout)
    assert answer["redriven"] == [ids[b"redrive-me"]]
    refused = {x["id"]: x for x in answer["refused"]}
    assert set(refused) == {ids[b"forged-journal"], ids[b"forged-command"],
                            ids[b"forged-as-coordinator"]}
    assert {x["reason"] for x in refused.values()} == {"foreign_topic"}
    assert journal in refused[ids[b"forged-journal"]]["detail"]
    assert shown.returncode == 1
    assert "refused 1 dead letter(s)" in shown.stdout
    assert "foreign_topic" in shown.stdout
    # Nothing reached the topics the forged letters named; the real one went home.
    assert not [r for r in clients.read_records(admin.kafka, journal) if r.value == victim]
    assert not [r for r in clients.read_records(admin.kafka, inventory_command)
                if r.value == victim]
    redriven = [r for r in clients.read_records(admin.kafka, base.topic("saga.inbox"))
                if dict(r.headers or []).get(headers.REDRIVEN_FROM)]
    assert [(r.key, dict(r.headers or [])[headers.REDRIVEN_FROM]) for r in redriven] == [
        (b"redrive-me", ids[b"redrive-me"].encode())]
