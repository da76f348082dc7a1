"""Encrypted payloads on real Kafka: with SAGA_PAYLOAD_KEYS every body on every topic is
sealed (no field of an order in any record's bytes), a key rotation keeps old sagas
readable, and a reader without the key says which key it lacks."""

from __future__ import annotations

import httpx
import pytest

from saga import BlockingSagaClient
from saga.codec.payload import new_key
from saga.config import Secret, Settings
from saga.dev.stack import Stack
from saga.engine.inputs import DeliverSignal, StartSaga
from saga.engine.lifecycle import SagaStatus
from saga.errors import PayloadKeyMissing
from saga.kafka import clients
from saga.kafka.topics import admin_client, create_topics, load_specs
from tests.saga.server.test_api import ready
from tests.system import STOCK, order, wait_terminal

K1, K2 = new_key(), new_key()
SECRETS = [b"c-private-7781", b"Rue de la Paix 12"]


def _order(saga_id: str, sku: str = "sku-1") -> dict[str, object]:
    return {**order(saga_id, sku), "customer": "c-private-7781",
            "address": "Rue de la Paix 12"}


def _run(stack: Stack, ids: list[str]) -> dict[str, SagaStatus | None]:
    for n, saga_id in enumerate(ids):
        stack.send(saga_id, StartSaga("order", _order(saga_id, "sku-rare" if n == 0
                                                      else "sku-1")))
        stack.send(saga_id, DeliverSignal("warehouse_picked", {"picker": "c-private-7781"}))
    stack.flush()
    return {i: s.status for i, s in wait_terminal(stack, ids).items() if i in ids}


def test_no_order_field_on_any_topic_and_keys_rotate(settings: Settings) -> None:
    first = settings.with_(payload_keys=Secret(f"k1:{K1}"))
    create_topics(admin_client(first.kafka), load_specs(first))
    stack = Stack(first, stock=STOCK)
    stack.start_all(["c1"])
    try:
        before = _run(stack, ["enc-0", "enc-1", "enc-2"])
    finally:
        stack.stop_all()
    assert stack.dead() == []

    # Rotate: k2 seals from now on, k1 still opens what it sealed.
    rotated = settings.with_(payload_keys=Secret(f"k2:{K2},k1:{K1}"))
    stack = Stack(rotated, stock=STOCK)
    stack.start_all(["c1"])
    server = stack.start(stack.add_server("enc").name)
    try:
        after = _run(stack, ["enc-3", "enc-4"])
        url = ready(stack, server.name)
        shown = httpx.get(f"{url}/api/sagas/enc-1/history", timeout=10).json()
        with BlockingSagaClient(settings=rotated) as client:
            old_history = client.history("enc-1")
            new_result = client.result("enc-4", timeout=30)
    finally:
        stack.stop_all()
    assert stack.dead() == []

    assert before == {"enc-0": SagaStatus.COMPENSATED, "enc-1": SagaStatus.COMPLETED,
                      "enc-2": SagaStatus.COMPLETED}
    assert after == {"enc-3": SagaStatus.COMPENSATED, "enc-4": SagaStatus.COMPLETED}
    # The API and the client (through Kafka) open both keys' bodies.
    started = next(e for e in shown if e["type"] == "SagaStarted")
    assert started["input"]["customer"] == "c-private-7781"
    started = next(e for e in old_history if e["type"] == "SagaStarted")
    assert started["input"]["address"] == "Rue de la Paix 12"
    assert new_result is not None

    # Not one topic holds a field of an order in clear, in keys, values or headers.
    scanned = 0
    for spec in load_specs(settings):
        for record in clients.read_records(settings.kafka, spec.name):
            scanned += 1
            raw = (record.key or b"") + (record.value or b"") + b"".join(
                (k.encode() + (v or b"")) for k, v in record.headers or [])
            leaked = [s for s in SECRETS if s in raw]
            assert not leaked, (spec.name, record.partition, record.offset, leaked)
    assert scanned > 50

    # A reader with only the new key cannot open the first sagas, and says why.
    with BlockingSagaClient(settings=settings.with_(payload_keys=Secret(f"k2:{K2}"))
                            ) as lacking, pytest.raises(PayloadKeyMissing) as missing:
        lacking.history("enc-1")
    assert "'k1'" in missing.value.message
    assert "SAGA_PAYLOAD_KEYS" in (missing.value.hint or "")
