"""Sagas that live long, on real Kafka through the client, each with the coordinator
SIGKILLed in the middle: child sagas in flight and an update being applied; schedule
slots falling due while no coordinator runs; a deploy of version 2 while version 1
sagas wait for a signal."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from saga.examples.services import read_report

from saga import BlockingSagaClient
from saga.config import Settings
from saga.dev.audit import audit_commands
from saga.dev.stack import SERVICE_NAMES
from saga.engine import events as ev
from saga.engine.lifecycle import SagaStatus
from tests.cli_helpers import run_saga
from tests.system import history, running_stack, wait_for, wait_terminal

COORDINATOR = "coordinator-c1"


def _started_once(settings: Settings, saga_id: str) -> None:
    """The saga was started once: one SagaStarted and no second start ignored."""
    events = [e.event for e in history(settings, saga_id)]
    assert sum(isinstance(e, ev.SagaStarted) for e in events) == 1, saga_id
    assert not [e for e in events if isinstance(e, ev.InputIgnored)
                and e.reason == "duplicate_start"], saga_id


def _charges_by_saga(settings: Settings) -> dict[str, int]:
    counts: dict[str, int] = {}
    for entry in read_report(settings, "payments")["entries"]:
        if entry["type"] == "charge":
            counts[entry["saga_id"]] = counts.get(entry["saga_id"], 0) + 1
    return counts


def test_children_and_an_update_survive_a_sigkill(settings: Settings) -> None:
    lines = [{"sku": "sku-rare" if n in (3, 7) else "sku-1", "qty": 1,
              "amount_cents": 1000 + n} for n in range(12)]
    children = [f"b-1-{n}" for n in range(12)]
    with running_stack(settings) as stack, BlockingSagaClient(settings=settings) as client:
        assert client.start("subscription", "s-1", {
            "customer": "c-2", "plan": "basic", "amount_cents": 900,
            "period_s": 3600}).created
        wait_for(lambda: client.status("s-1").waiting_for == ("cancel_subscription",), 60,
                 "the subscription to charge and wait for its period")
        # a subscription whose runs (continue-as-new each second) cross the SIGKILL
        assert client.start("subscription", "s-2", {
            "customer": "c-3", "plan": "basic", "amount_cents": 300, "period_s": 1,
            "cycles": 5}).created
        assert client.start("bulk_order", "b-1", {"id": "b-1", "customer": "c-1",
                                                  "lines": lines}).created
        # the parent has started its twelve children, which are under way (each waits a
        # second for its pick): kill the coordinator now, with an update just sent
        stack.wait_until(lambda s: "b-1" in s and len(s["b-1"].children) == 12
                         and not all(c.done for c in s["b-1"].children.values()), 60,
                         poll_s=0.05)
        with ThreadPoolExecutor(1) as pool:
            answer = pool.submit(client.update, "s-1", "change_plan",
                                 {"plan": "gold", "amount_cents": 1900}, timeout=120,
                                 update_id="u-1")
            time.sleep(0.3)
            stack.kill(COORDINATOR)
            ended_at_kill = sum(s.terminal for i, s in stack.states().items()
                                if i in children)
            time.sleep(1)
            stack.start(COORDINATOR)
            assert answer.result(150) == {"plan": "gold", "from_cycle": 1}
        # sent again with its id, the update is answered as before and applied once
        assert client.update("s-1", "change_plan", {"plan": "gold", "amount_cents": 1900},
                             update_id="u-1") == {"plan": "gold", "from_cycle": 1}
        bulk = client.result("b-1", timeout=120)
        renewed = client.result("s-2", timeout=120)
        renewed_info = client.status("s-2")
        states = wait_terminal(stack, children)
        client.signal("s-1", "cancel_subscription", {})
        assert client.result("s-1", timeout=60)["status"] == "cancelled"
        parent = client.status("b-1")
        child = client.status("b-1-3")
        assert stack.dead() == []

    print(f"\n12 children, {ended_at_kill} of them ended when the coordinator was killed")
    assert ended_at_kill < 12
    assert (bulk["lines"], bulk["shipped"]) == (12, 10)
    assert [o["line"] for o in bulk["outcomes"] if o["status"] == "failed"] == [3, 7]
    assert {o["reason"] for o in bulk["outcomes"] if o["status"] == "failed"} == \
        {"compensated"}
    assert sorted(parent.children) == sorted(children)
    assert (child.parent, child.status) == ("b-1", SagaStatus.COMPENSATED)
    assert all(states[c].parent == "b-1" for c in children)
    for saga_id in ("b-1", *children):
        _started_once(settings, saga_id)
    charges = _charges_by_saga(settings)
    assert {c: charges.get(c, 0) for c in children} == dict.fromkeys(children, 1)
    assert charges["s-1"] == 1
    # five runs, five charges: each run's charge is a new command, never deduplicated
    # as the run before's; the projection holds only the last run's history
    assert (renewed["status"], renewed["cycles"], renewed_info.run) == ("ended", 5, 4)
    assert charges["s-2"] == 5
    held = history(settings, "s-2")
    assert isinstance(held[0].event, ev.SagaContinued)
    assert held[0].event.run == 4
    applied = [e.event for e in history(settings, "s-1")
               if isinstance(e.event, ev.UpdateApplied)]
    assert [a.update_id for a in applied] == ["u-1"]
    assert audit_commands(settings, SERVICE_NAMES).duplicates == {}


def _slot_of(saga_id: str) -> int:
    stamp = saga_id.rsplit("@", 1)[1]
    return int(datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp())


def test_every_schedule_slot_runs_once_through_a_sigkill(settings: Settings) -> None:
    with running_stack(settings) as stack, BlockingSagaClient(settings=settings) as client:
        assert client.create_schedule(
            "tick", cron="* * * * * */2", saga_type="subscription",
            input={"customer": "c-7", "plan": "p", "amount_cents": 100, "period_s": 0,
                   "cycles": 1}, overlap="allow", catchup_window_s=120)
        wait_for(lambda: len(client.select(id_prefix="tick@")) >= 2, 60, "two slots to run")
        stack.kill(COORDINATOR)
        down_at = time.time()
        time.sleep(5)  # two or three slots fall due while no coordinator runs
        stack.start(COORDINATOR)
        wait_for(lambda: max(map(_slot_of, client.select(id_prefix="tick@"))) > down_at + 8,
                 90, "slots after the restart")
        [entry] = client.schedules()
        assert (entry["schedule_id"], entry["cron"], entry["paused"]) == \
            ("tick", "* * * * * */2", False)
        client.control_schedule("tick", "delete")
        assert client.result("schedule:tick", timeout=60)["deleted"] is True
        runs = client.select(id_prefix="tick@")
        states = wait_terminal(stack, runs)
        wait_for(lambda: client.schedules() == [], 30, "the catalog to drop the schedule")
        assert stack.dead() == []

    slots = sorted(map(_slot_of, runs))
    print(f"\n{len(runs)} runs, slots {slots[0]}..{slots[-1]}, down from {down_at:.0f} for 5 s")
    assert len(slots) == len(set(slots))  # one saga per slot
    # overlap=allow with a catch-up window: every slot from the first to the last ran,
    # those that fell due while the coordinator was dead included
    assert slots == list(range(slots[0], slots[-1] + 1, 2))
    assert any(down_at < s < down_at + 5 for s in slots)
    assert all(states[r].status is SagaStatus.COMPLETED for r in runs)
    assert all(states[r].parent == "schedule:tick" for r in runs)
    for saga_id in runs:
        _started_once(settings, saga_id)
    charges = _charges_by_saga(settings)
    assert [charges.get(r, 0) for r in runs] == [1] * len(runs)


def test_a_deploy_of_version_2_while_version_1_sagas_wait(settings: Settings) -> None:
    with running_stack(settings, workflows="tests.versions_v1") as stack, \
            BlockingSagaClient(settings=settings) as client:
        for saga_id in ("g-1", "g-2"):
            client.start("greeter", saga_id, {})
        wait_for(lambda: all(client.status(i).waiting_for == ("go",) for i in ("g-1", "g-2")),
                 60, "the version 1 sagas to wait for their signal")
        stack.kill(COORDINATOR)  # the deploy: no graceful stop
        stack.workflows = "tests.versions_v2"
        stack.start(COORDINATOR)
        # the restarted coordinator takes the partitions once the dead one's session ends
        assert client.start("greeter", "g-3", {}, wait_s=90).created
        wait_for(lambda: client.status("g-3").waiting_for == ("go",), 60,
                 "the version 2 saga to wait for its signal")
        for saga_id in ("g-1", "g-2", "g-3"):
            client.signal(saga_id, "go", {})
        results = {i: client.result(i, timeout=60) for i in ("g-1", "g-2", "g-3")}
        versions = {i: client.status(i).version for i in results}
        listed = json.loads(run_saga(settings, "list", "--version", "1", "--json").stdout)
        table = run_saga(settings, "list", "--type", "greeter").stdout
        verified = run_saga(settings, "verify-replay", "--workflows", "tests.versions_v2",
                            "--json")
        assert stack.dead() == []

    assert results == {"g-1": {"path": "v1"}, "g-2": {"path": "v1"}, "g-3": {"path": "v2"}}
    assert versions == {"g-1": 1, "g-2": 1, "g-3": 2}
    assert sorted(s["saga_id"] for s in listed) == ["g-1", "g-2"]
    assert "version" in table.splitlines()[0]
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert json.loads(verified.stdout) == {"checked": 3, "diverging": []}
    # each took its own path: only version 2 confirmed
    confirmed = [c for c in audit_commands(settings, ["notifications"]).commands
                 if c["saga_id"].startswith("g-")]
    assert [c["saga_id"] for c in confirmed] == ["g-3"]
