"""Hostile workflows and records beside normal orders, on real Kafka: the coordinator
never exits, every normal order finishes, each hostile saga ends PARKED or FAILED (or
CANCELLED when cancelled) with its reason."""

from __future__ import annotations

from typing import Any

from saga.config import Settings
from saga.dev.audit import audit_commands, read_topic
from saga.engine.inputs import CancelSaga, DeliverSignal, StartSaga
from saga.engine.lifecycle import SagaStatus
from saga.kafka import clients
from saga.kafka.partitioner import partition_of
from saga.kafka.records import RecordCodec
from tests.cli_helpers import run_saga
from tests.system import history, order, running_stack, wait_for, wait_terminal

EXPECTED = {
    "set_input": (SagaStatus.FAILED, "UnencodableValue: the input of ctx.call('payments', "
                  "'charge') is not JSON"),
    "decimal_input": (SagaStatus.FAILED, "UnencodableValue"),
    "huge_int": (SagaStatus.FAILED, "UnencodableValue"),
    "big_result": (SagaStatus.FAILED, "the workflow's result is 614402 bytes, over the "
                   "limit"),
    "system_exit": (SagaStatus.PARKED, "workflow_bug: the workflow raised SystemExit"),
    "cancelled_error": (SagaStatus.PARKED, "workflow_bug: the workflow raised "
                        "CancelledError"),
    "endless_loop": (SagaStatus.PARKED, "budget_exceeded: the workflow ran for more than 1s"),
    "fan_out": (SagaStatus.PARKED, "budget_exceeded: one decision issued more than 500 "
                "commands"),
    "finally_await": (SagaStatus.CANCELLED, "stop it"),
    # its step calls `nobody`; a command forged onto payments' topic under its id gets
    # payments' answer, which is not the step's service's: refused, and the saga waits
    # until it is cancelled
    "await_reply": (SagaStatus.CANCELLED, "no one else may answer"),
}


def test_hostile_workflows_and_records_cannot_stop_the_coordinator(settings: Settings
                                                                   ) -> None:
    orders = [f"ok-{n}" for n in range(20)]
    with running_stack(settings, workflows="saga.examples.order,tests.hostile_workflows",
                       coordinator_env={"SAGA_RUN_MAX_SECONDS": "1",
                                        "SAGA_RUN_MAX_COMMANDS": "500"}) as stack:
        for name in EXPECTED:
            stack.send(f"h-{name}", StartSaga(f"hostile.{name}", {}))
        for saga_id in orders[:10]:
            stack.send(saga_id, StartSaga("order", order(saga_id)))
            stack.send(saga_id, DeliverSignal("warehouse_picked", None))
        # A record near Kafka's 1 MB limit: dead-lettered whole, it would be too big.
        stack.send_raw(b"near-1mb", b"\x00" * (950 * 1024))
        # Inputs without a key, or in another partition than their saga's (another
        # client's partitioner): re-routed, never applied where they landed.
        # (Never picked: a signal sent meanwhile could overtake the re-routed start.)
        codec = RecordCodec()
        stack.send_raw(None, codec.encode_inbox("ok-keyless", StartSaga(
            "order", {**order("ok-keyless"), "pick_timeout_s": 2})))
        wrong = (partition_of("ok-misrouted", settings.partitions) + 1) % settings.partitions
        producer = clients.producer(settings.kafka)
        producer.produce(settings.topic("saga.inbox"), codec.encode_inbox(
            "ok-misrouted", StartSaga("order", {**order("ok-misrouted"),
                                                "pick_timeout_s": 2})),
            b"ok-misrouted", partition=wrong)
        # The command the saga waits for, with a body no service can read, on payments.
        producer.produce(settings.topic("payments.commands"), codec.codec.encode("command", {
            "command_id": "h-await_reply:0:1", "saga_id": "h-await_reply",
            "saga_type": "hostile.await_reply", "service": "payments", "name": "charge",
            "kind": "ACTION", "attempt": 1, "issued_at_ms": 0,
            "reply_topic": settings.topic("saga.inbox"), "body": b"{not json"}),
            b"h-await_reply")
        assert producer.flush(30) == 0
        orders += ["ok-keyless", "ok-misrouted"]
        stack.flush()
        stack.wait_until(lambda s: "h-finally_await" in s
                         and s["h-finally_await"].status is SagaStatus.WAITING, 60)
        stack.send("h-finally_await", CancelSaga("stop it"))
        wait_for(lambda: len(_letters(settings).get(b"h-await_reply", [])) == 2, 60,
                 "payments' answer to the forged command to be refused")
        stack.send("h-await_reply", CancelSaga("no one else may answer"))
        for saga_id in orders[10:]:
            stack.send(saga_id, StartSaga("order", order(saga_id)))
            stack.send(saga_id, DeliverSignal("warehouse_picked", None))
        stack.flush()
        hostile = [f"h-{name}" for name in EXPECTED if EXPECTED[name][0] is not
                   SagaStatus.PARKED]
        states = wait_terminal(stack, orders + hostile, timeout_s=180)
        parked = [f"h-{name}" for name in EXPECTED if EXPECTED[name][0] is SagaStatus.PARKED]
        states = stack.wait_until(
            lambda s: all(i in s and s[i].status is SagaStatus.PARKED for i in parked), 60)
        for saga_id in parked:  # the parked state, as saved, before any way out
            assert states[saga_id].status is SagaStatus.PARKED, (saga_id, states[saga_id])
        # The ways out, through the CLI as an operator would use them.
        for args in (["abandon", "h-system_exit", "--reason", "won't fix"],
                     ["cancel", "h-endless_loop"], ["resume", "h-cancelled_error"]):
            result = run_saga(settings, *args)
            assert result.returncode == 0, result.stderr
        after = stack.wait_until(
            lambda s: s["h-system_exit"].status is SagaStatus.FAILED
            and s["h-endless_loop"].status is SagaStatus.CANCELLED
            and any(e.event.type_name == "SagaResumed"
                    for e in history(settings, "h-cancelled_error"))
            and s["h-cancelled_error"].status is SagaStatus.PARKED, 60)
        assert stack.dead() == [], "a process exited:\n" + "\n".join(stack.dead())

    assert all(states[i].status is SagaStatus.COMPLETED for i in orders)
    assert after["h-system_exit"].error == "abandoned: won't fix"
    assert after["h-endless_loop"].status is SagaStatus.CANCELLED
    resumed = [e.event.type_name for e in history(settings, "h-cancelled_error")]
    assert resumed[-2:] == ["SagaResumed", "SagaParked"]  # same code: parks again
    for name, (status, reason) in EXPECTED.items():
        state = states[f"h-{name}"]
        assert state.status is status, (name, state.status, state.error)
        assert reason in state.error, (name, state.error)
    commands = audit_commands(settings, ["payments", "ops"])
    assert commands.duplicates == {}
    hostile_commands = [c["command_id"] for c in commands.commands
                        if c["saga_id"].startswith("h-")]
    # nothing a cut-short or failed run decided was sent (only the test's bad command)
    assert hostile_commands == ["h-await_reply:0:1"]
    letters = _letters(settings)
    # payments set the unreadable command aside; the coordinator, payments' answer to it
    assert sorted(letter["reason"] for letter in letters[b"h-await_reply"]) == [
        "reply_from_other_service", "undecodable"]
    [near] = letters[b"near-1mb"]
    assert near["value"] is None
    assert "is not kept" in near["detail"]


def _letters(settings: Settings) -> dict[bytes | None, list[dict[str, Any]]]:
    """The dead letters by key."""
    by_key: dict[bytes | None, list[dict[str, Any]]] = {}
    for key, value, _ in read_topic(settings.kafka, settings.topic("saga.dlq")):
        by_key.setdefault(key, []).append(RecordCodec().decode_dead_letter(value))
    return by_key
