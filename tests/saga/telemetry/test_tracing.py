"""One trace per saga, across real processes: the application that starts an order, the
coordinator that decides it, and the five services that handle its steps, written to a
file exporter (SAGA_TRACE_FILE) and checked for the parent/child structure."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from saga import BlockingSagaClient
from saga.config import Settings
from saga.telemetry import tracing
from tests.system import order, running_stack

SERVICES = ("payments", "inventory", "ops", "shipping", "notifications")


def spans(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def test_one_trace_spans_the_client_the_coordinator_and_every_service(
        settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    written = tmp_path / "spans.jsonl"
    monkeypatch.setenv("SAGA_TRACE_FILE", str(written))  # every process of the stack too
    assert tracing.configure("shop-app")  # this test is the application
    try:
        with running_stack(settings) as stack, BlockingSagaClient(settings=settings) as client:
            with tracing.span("checkout"):  # the application's own span
                handle = client.start("order", "tr-1", {**order("tr-1"), "pick_timeout_s": 1})
            assert handle.result(timeout=90)["status"] == "completed"  # never picked: alert
            stack.stop_all()  # the processes flush what they hold on the way out
    finally:
        tracing.shutdown()
    every = spans(written)
    [app] = [s for s in every if s["name"] == "checkout"]
    mine = [s for s in every if s["trace_id"] == app["trace_id"]]
    by_name = {s["name"]: s for s in mine}
    start = by_name["saga.start order"]
    saga = by_name["saga order"]
    assert (start["parent_id"], start["service"]) == (app["span_id"], "shop-app")
    assert (saga["parent_id"], saga["service"]) == (start["span_id"], "saga-coordinator")
    assert saga["attributes"]["saga.status"] == "COMPLETED"
    steps = {s["name"].removeprefix("saga.step "): s for s in mine
             if s["name"].startswith("saga.step ")}
    handlers = {s["name"].removeprefix("saga.handle "): s for s in mine
                if s["name"].startswith("saga.handle ")}
    assert sorted(steps) == sorted(handlers) == sorted(
        ["payments.charge", "inventory.reserve", "ops.alert", "shipping.schedule",
         "notifications.send_confirmation"])
    for name, step in steps.items():
        assert step["parent_id"] == saga["span_id"], name
        assert step["attributes"]["saga.outcome"] == "ok"
        assert handlers[name]["parent_id"] == step["span_id"], name
    assert {h["service"] for h in handlers.values()} == {f"saga-service-{s}" for s in SERVICES}
    decisions = [s for s in mine if s["name"].startswith("saga.decide ")]
    assert all(d["parent_id"] == saga["span_id"] for d in decisions)
    kinds = Counter(d["name"] for d in decisions)
    assert kinds["saga.decide start"] == 1
    assert kinds["saga.decide reply"] == 5  # one per step's reply
    assert kinds["saga.decide timer"] == 1  # the pick deadline
    # the saga's span covers every step
    assert saga["start_ns"] <= min(s["start_ns"] for s in steps.values())
    assert saga["end_ns"] >= max(s["end_ns"] for s in steps.values())
