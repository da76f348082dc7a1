"""Invariant 8: a paused owner (a zombie) that wakes after its partitions moved commits
nothing. Coordinator c1 is SIGSTOPped in the middle of a batch (a workflow takes seconds
to decide, and the pause lands inside it) and stays stopped past its session; c2 joins
and takes every partition; then c1 is woken (SIGCONT) and carries on with its batch as if
nothing happened. Its transaction carries the old group generation and is refused; it
rejoins instead of exiting. No command id appears twice on the command topics, no
journal seq twice (the rebuild would refuse it), and every instance's current copy of
every partition equals the rebuild."""

from __future__ import annotations

import json
import time

from saga.config import Settings
from saga.dev.audit import audit_commands, projection_violations
from saga.dev.stack import SERVICE_NAMES
from saga.engine.inputs import DeliverSignal, StartSaga
from saga.engine.lifecycle import SagaStatus
from tests.cli_helpers import run_saga
from tests.system import order, running_stack, wait_for, wait_terminal
from tests.zombie_workflows import DECIDE_S

PAUSE_S = 16  # past the 10 s session timeout: the group moves the partitions away


def test_a_paused_coordinator_commits_nothing_when_it_wakes(settings: Settings) -> None:
    ids: list[str] = []
    workflows = "saga.examples.order,tests.zombie_workflows"
    with running_stack(settings, coordinators=("c1",), workflows=workflows) as stack:
        wait_for(lambda: "assigned partitions" in stack.log_tail("coordinator-c1"), 60,
                 "c1 to own every partition")

        def send(prefix: str, count: int) -> None:
            for n in range(count):
                saga_id = f"{prefix}-{n:03d}"
                ids.append(saga_id)
                # half are picked at once; the others wait for their pick deadline, a
                # timer c1 would fire if it still believed it owned the partition
                picked = n % 2 == 0
                stack.send(saga_id, StartSaga("order", {
                    **order(saga_id, qty=1), **({} if picked else {"pick_timeout_s": 8})}))
                if picked:
                    stack.send(saga_id, DeliverSignal("warehouse_picked", None))
            stack.flush()

        send("before", 40)
        wait_terminal(stack, [i for i in ids if int(i[-3:]) % 2 == 0], timeout_s=60)
        # A batch that takes DECIDE_S to decide, with orders in it: pause inside it.
        stack.send("slow", StartSaga("slow_decision", {}))
        send("batch", 20)
        ids.append("slow")
        time.sleep(1.0 + DECIDE_S / 4)
        stack.pause("coordinator-c1")
        paused_at = time.monotonic()
        stack.start(stack.add_coordinator("c2", env=None).name)
        send("during", 40)
        wait_for(lambda: "assigned partitions" in stack.log_tail("coordinator-c2"),
                 PAUSE_S + 40, "c2 to take c1's partitions")
        time.sleep(max(0.0, PAUSE_S - (time.monotonic() - paused_at)))
        stack.resume("coordinator-c1")
        send("after", 40)
        states = wait_terminal(stack, ids, timeout_s=180)
        c1_log = stack.log_tail("coordinator-c1", 300)
        assert stack.dead() == [], "a process exited:\n" + "\n".join(stack.dead())

    assert all(states[i].status is SagaStatus.COMPLETED for i in ids), \
        {i: states[i].status for i in ids if states[i].status is not SagaStatus.COMPLETED}
    # the woken zombie's batch was refused, not committed: it found out from Kafka
    assert "transaction aborted" in c1_log, c1_log[-3000:]
    audit = audit_commands(settings, SERVICE_NAMES)
    assert audit.duplicates == {}
    assert [c["command_id"] for c in audit.commands if c["saga_id"] == "slow"] \
        == ["slow:0:1"]
    live = json.loads(run_saga(settings, "checksum", "--by-partition", "--json").stdout)
    rebuild = run_saga(settings, "rebuild", "--by-partition", "--json")
    assert rebuild.returncode == 0, rebuild.stderr  # a repeated seq would stop it here
    report = projection_violations(live, json.loads(rebuild.stdout))
    assert report.problems == []
    assert report.compared >= 3
