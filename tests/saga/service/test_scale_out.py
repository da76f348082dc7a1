"""Invariant 9: a step's side effect happens once across retries and across service
instances. Two instances of the payments service share its command partitions; one is
SIGKILLed mid-run and recreated with an empty state folder (a container recreated with
no volume), so everything it knew comes back from the payments.state changelog. Every
order ends as it should, each charge step was executed once (each execution makes a
fresh charge id: one id per step across every committed reply), and the ledger, read
from the changelog, holds one charge per order and one refund per out-of-stock order."""

from __future__ import annotations

import shutil
import time

from saga.examples.services import read_report

from saga.config import Settings
from saga.dev.audit import audit_commands, order_violations, replies_by_step
from saga.dev.stack import SERVICE_NAMES
from saga.engine.inputs import DeliverSignal, StartSaga
from saga.engine.lifecycle import SagaStatus
from saga.layout import StateLayout
from tests.system import order, running_stack, wait_for, wait_terminal

ORDERS = 300


def test_two_payments_instances_one_recreated_charge_each_order_once(settings: Settings
                                                                      ) -> None:
    ids = [f"s-{n:03d}" for n in range(ORDERS)]
    rare = {i for n, i in enumerate(ids) if n % 5 == 0}
    with running_stack(settings) as stack:
        second = stack.add_service("payments", instance_id="2").name
        stack.start(second)
        for name in ("service-payments", second):
            wait_for(lambda n=name: "partitions [" in stack.log_tail(n, 200), 60,
                     f"{name} to be assigned partitions")

        def send(chunk: list[str]) -> None:
            for saga_id in chunk:
                stack.send(saga_id, StartSaga("order", order(
                    saga_id, "sku-rare" if saga_id in rare else "sku-1", qty=1)))
                stack.send(saga_id, DeliverSignal("warehouse_picked", None))
            stack.flush()

        send(ids[:100])
        stack.wait_until(lambda s: sum(1 for i in ids[:100] if i in s and s[i].terminal)
                         >= 30, 60, poll_s=0.1)
        # The second instance dies mid-run and comes back with nothing on disk.
        stack.kill(second)
        shutil.rmtree(StateLayout(settings.state_dir).service_store("payments", "2"))
        send(ids[100:200])
        time.sleep(2)
        stack.start(second)
        send(ids[200:])
        states = wait_terminal(stack, ids, timeout_s=180)
        logs = {name: stack.log_tail(name, 400) for name in ("service-payments", second)}
        assert stack.dead() == [], "a process exited:\n" + "\n".join(stack.dead())

    for name, log in logs.items():  # both instances handled commands
        assert "state changes restored" in log, (name, log[-2000:])
    assert "rebuilding it from payments.state" not in logs[second]  # a fresh folder
    ledger = read_report(settings, "payments")["entries"]
    problems = order_violations(states, ids, audit_commands(settings, SERVICE_NAMES), ledger)
    assert problems == []
    assert sum(states[i].status is SagaStatus.COMPENSATED for i in ids) == len(rare)
    charges = {key: results for key, results in replies_by_step(settings, "payments").items()
               if key.endswith(":0")}
    assert len(charges) == ORDERS
    executed_twice = {key: sorted({r["charge_id"] for r in results})
                      for key, results in charges.items()
                      if len({r["charge_id"] for r in results}) != 1}
    assert executed_twice == {}
    # each ledger charge is the one the replies told the saga about
    by_saga = {e["saga_id"]: e["charge_id"] for e in ledger if e["type"] == "charge"}
    assert by_saga == {key.rsplit(":", 1)[0]: results[0]["charge_id"]
                       for key, results in charges.items()}
