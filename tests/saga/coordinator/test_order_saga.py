"""The order saga end to end: real Kafka, a coordinator process, five service processes."""

from __future__ import annotations

import json

from saga.examples.services import read_report

from saga.config import Settings
from saga.dev.audit import audit_commands, read_topic
from saga.dev.stack import SERVICE_NAMES
from saga.engine import events as ev
from saga.engine.inputs import DeliverSignal, StartSaga
from saga.engine.lifecycle import SagaStatus
from saga.kafka import clients
from saga.kafka.records import RecordCodec
from tests.cli_helpers import run_saga
from tests.system import STOCK, history, order, running_stack, wait_terminal


def test_both_paths_with_ledger_and_stock(settings: Settings) -> None:
    with running_stack(settings) as stack:
        picked = ["ok-1", "ok-2"]
        short = ["short-1", "short-2"]
        for saga_id in picked:
            stack.send(saga_id, StartSaga("order", order(saga_id, "sku-1", qty=3)))
            stack.send(saga_id, DeliverSignal("warehouse_picked", {"by": "w-1"}))
        for saga_id in short:
            stack.send(saga_id, StartSaga("order", order(saga_id, "sku-rare", qty=1,
                                                         amount=700)))
        stack.flush()
        states = wait_terminal(stack, picked + short)

    for saga_id in picked:
        assert states[saga_id].status is SagaStatus.COMPLETED
        assert states[saga_id].result["status"] == "completed"
        assert states[saga_id].result["tracking"].startswith("trk-")
    for saga_id in short:
        assert states[saga_id].status is SagaStatus.COMPENSATED
        assert states[saga_id].result == {"status": "cancelled", "reason": "out_of_stock"}

    ledger = read_report(settings, "payments")
    assert ledger["charges"] == 4
    assert ledger["refunds"] == 2
    assert ledger["charged_cents"] == 2 * 4599 + 2 * 700
    assert ledger["refunded_cents"] == 2 * 700
    assert sorted(e["saga_id"] for e in ledger["entries"] if e["type"] == "refund") == short

    # reservations changed sku-1 only; with the starting stock, every level
    assert read_report(settings, "inventory")["stock"] == {"sku-1": STOCK["sku-1"] - 6}
    stock = read_report(settings, "inventory", stock=settings.state_dir / "stock.json")
    assert stock["stock"] == {"sku-1": STOCK["sku-1"] - 6, "sku-2": STOCK["sku-2"],
                              "sku-rare": 0}

    audit = audit_commands(settings, SERVICE_NAMES)
    assert audit.duplicates == {}
    # an outside auditor needs no Avro to count commands: the headers say it all
    headers = [dict(h) for _, _, h in read_topic(settings.kafka,
                                                  settings.topic("payments.commands"))]
    assert sorted(h["saga.command"] for h in headers) == [b"payments.charge"] * 4 + [
        b"payments.refund"] * 2
    assert len({h["saga.command_id"] for h in headers}) == 6
    names = sorted((c["service"], c["name"]) for c in audit.by_saga()["short-1"])
    assert names == [("inventory", "reserve"), ("payments", "charge"), ("payments", "refund")]

    status = run_saga(settings, "status", "ok-1", "--json")
    assert status.returncode == 0, status.stderr
    summary = json.loads(status.stdout)
    assert {k: summary[k] for k in ("saga_id", "type", "status", "error")} == {
        "saga_id": "ok-1", "type": "order", "status": "COMPLETED", "error": None}
    assert summary["result"]["status"] == "completed"
    history = json.loads(run_saga(settings, "history", "short-1", "--json").stdout)
    # the charge has a 30 s step timeout: held in the step (deadline_ms), no timer entries
    assert [h["type"] for h in history][:3] == ["SagaStarted", "CommandIssued",
                                                "CommandCompleted"]
    assert history[1]["deadline_ms"] == history[1]["at_ms"] + 30_000
    assert history[-1]["type"] == "SagaCompleted"
    listed = json.loads(run_saga(settings, "list", "--status", "compensated", "--json").stdout)
    assert sorted(s["saga_id"] for s in listed) == short


def test_cancel_compensates_what_was_done(settings: Settings) -> None:
    with running_stack(settings) as stack:
        stack.send("c-1", StartSaga("order", order("c-1")))
        stack.flush()
        stack.wait_until(lambda s: "c-1" in s and s["c-1"].status is SagaStatus.WAITING, 60)
        cancel = run_saga(settings, "cancel", "c-1", "--reason", "customer called")
        assert cancel.returncode == 0, cancel.stderr
        states = wait_terminal(stack, ["c-1"])
    assert states["c-1"].status is SagaStatus.CANCELLED
    assert states["c-1"].error == "customer called"
    audit = audit_commands(settings, SERVICE_NAMES)
    assert sorted(c["name"] for c in audit.by_saga()["c-1"] if c["kind"] == "COMPENSATION") \
        == ["refund", "release"]
    issued = [e.event for e in history(settings, "c-1")
              if isinstance(e.event, ev.CommandIssued)
              and e.event.kind == ev.CommandKind.COMPENSATION]
    # newest first: the reservation is released before the charge is refunded
    assert [(c.service, c.name) for c in issued] == [("inventory", "release"),
                                                     ("payments", "refund")]


def test_a_redelivered_command_has_its_effect_once(settings: Settings) -> None:
    with running_stack(settings) as stack:
        stack.send("d-1", StartSaga("order", order("d-1")))
        stack.send("d-1", DeliverSignal("warehouse_picked", None))
        stack.flush()
        wait_terminal(stack, ["d-1"])
        audit = audit_commands(settings, ["payments"])
        [charge] = [c for c in audit.commands if c["name"] == "charge"]
        # deliver the very same command again, as an at-least-once redelivery would
        again = RecordCodec().encode_command("d-1", "order", ev.CommandIssued(
            0, charge["command_id"], "payments", "charge", ev.CommandKind.ACTION, 1,
            charge["body"]),
            settings.topic("saga.inbox"), 0)
        producer = clients.producer(settings.kafka)
        producer.produce(settings.topic("payments.commands"), again, b"d-1")
        assert producer.flush(30) == 0
        # the service answers again (a duplicate reply, recorded and ignored by the saga)
        stack.wait_until(lambda s: any(e.event.type_name == "InputIgnored"
                                       for e in history(settings, "d-1")), 60)
    assert read_report(settings, "payments")["charges"] == 1
    ignored = [e.event for e in history(settings, "d-1") if e.event.type_name == "InputIgnored"]
    assert [i.reason for i in ignored] == ["duplicate_reply"]  # type: ignore[attr-defined]



