"""Claim-check on real Kafka: an order whose input is larger than a Kafka record may be
(the broker's default is 1 MB) runs end to end through the coordinator, the services, the
API and the client, and no record on any topic carries more than its claim."""

from __future__ import annotations

from pathlib import Path

import httpx

from saga import BlockingSagaClient
from saga.config import Settings
from saga.dev.stack import Stack
from saga.engine.inputs import DeliverSignal, StartSaga
from saga.engine.lifecycle import SagaStatus
from saga.kafka import clients
from saga.kafka.topics import admin_client, create_topics, load_specs
from tests.saga.server.test_api import ready
from tests.system import STOCK, order, wait_terminal

NOTE = "fragile: keep upright. " * 70_000  # 1.6 MB of JSON


def test_an_order_bigger_than_a_kafka_record_runs_through_the_claim_check(
        settings: Settings, tmp_path: Path) -> None:
    claimed = settings.with_(claim_check_dir=str(tmp_path / "claims"),
                             claim_check_bytes=16 * 1024, max_payload_bytes=4 * 1024 * 1024)
    create_topics(admin_client(claimed.kafka), load_specs(claimed))
    stack = Stack(claimed, stock=STOCK)
    stack.start_all(["c1"])
    server = stack.start(stack.add_server("claims").name)
    try:
        for saga_id, sku in (("big-0", "sku-1"), ("big-1", "sku-rare")):
            stack.send(saga_id, StartSaga("order", {**order(saga_id, sku), "note": NOTE}))
            stack.send(saga_id, DeliverSignal("warehouse_picked", None))
        stack.flush()
        ended = {i: s.status for i, s in wait_terminal(stack, ["big-0", "big-1"]).items()}
        url = ready(stack, server.name)
        shown = httpx.get(f"{url}/api/sagas/big-0/history", timeout=30).json()
        with BlockingSagaClient(settings=claimed) as client:
            history = client.history("big-1")
    finally:
        stack.stop_all()
    assert stack.dead() == []

    assert ended == {"big-0": SagaStatus.COMPLETED, "big-1": SagaStatus.COMPENSATED}
    started = next(e for e in shown if e["type"] == "SagaStarted")
    assert started["input"]["note"] == NOTE
    started = next(e for e in history if e["type"] == "SagaStarted")
    assert started["input"]["note"] == NOTE
    # The big body went to the store, once per distinct body; the topics hold claims.
    blobs = [p for p in (tmp_path / "claims").rglob("*") if p.is_file()]
    assert blobs
    assert all(p.stat().st_size > 16 * 1024 for p in blobs)
    largest = 0
    for spec in load_specs(settings):
        for record in clients.read_records(settings.kafka, spec.name):
            largest = max(largest, len(record.value or b""))
            assert b"keep upright. fragile" not in (record.value or b""), spec.name
    assert 0 < largest < 20 * 1024
