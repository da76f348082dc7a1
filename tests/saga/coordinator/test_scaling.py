"""Several coordinators in one group: partitions spread and move, a zombie is fenced,
and dead letters can be listed, shown and redriven."""

from __future__ import annotations

import json

from saga.config import Settings
from saga.dev.audit import audit_commands
from saga.dev.stack import SERVICE_NAMES, Stack
from saga.engine.inputs import DeliverSignal, StartSaga
from saga.engine.lifecycle import SagaStatus
from saga.engine.state import SagaState
from saga.layout import StateLayout
from saga.store.local_projections import LocalProjections
from tests.cli_helpers import run_saga
from tests.system import order, running_stack, wait_for, wait_terminal


def _orders(stack: Stack, prefix: str, count: int) -> list[str]:
    ids = [f"{prefix}-{n:03d}" for n in range(count)]
    for saga_id in ids:
        stack.send(saga_id, StartSaga("order", order(saga_id, "sku-2", qty=1)))
        stack.send(saga_id, DeliverSignal("warehouse_picked", None))
    stack.flush()
    return ids


def _states(*places: Settings) -> dict[str, SagaState]:
    """The sagas in the projections of several machines' state folders."""
    merged: dict[str, SagaState] = {}
    for place in places:
        if not StateLayout(place.state_dir).projections():
            continue
        projections = LocalProjections(place)
        try:
            for state in projections.states():
                if state.saga_id not in merged or merged[state.saga_id].seq < state.seq:
                    merged[state.saga_id] = state
        finally:
            projections.close()
    return merged


def _assigned(stack: Stack, name: str) -> bool:
    return "assigned partitions" in stack.log_tail(name, 200)


def test_coordinators_share_the_work_and_a_zombie_is_fenced(settings: Settings) -> None:
    with running_stack(settings, coordinators=("a", "b")) as stack:
        wait_for(lambda: _assigned(stack, "coordinator-a") and _assigned(stack, "coordinator-b"),
                 90, "both coordinators to get partitions")
        first = _orders(stack, "s", 60)
        wait_terminal(stack, first)
        owners = {name: stack.log_tail(name, 200) for name in ("coordinator-a",
                                                                "coordinator-b")}
        assert all("assigned partitions [" in log for log in owners.values())

        # A second process claims to be "a" (think: a paused VM that came back, or a
        # redeploy that did not wait). Its init_transactions fences the old one.
        # It runs "on another machine": its own state folder.
        elsewhere = settings.with_(state_dir=settings.state_dir / "elsewhere")
        usurper = stack.add_coordinator("a", name="coordinator-a-new",
                                        env={"SAGA_STATE_DIR": str(elsewhere.state_dir)})
        stack.start(usurper.name)
        wait_for(lambda: _assigned(stack, "coordinator-a-new"), 90,
                 "the new instance to take over")
        second = _orders(stack, "t", 60)
        wait_for(lambda: not stack.processes["coordinator-a"].alive, 90,
                 "the fenced instance to stop")
        old = stack.processes["coordinator-a"]
        assert old.popen is not None
        assert old.popen.returncode == 2
        assert "give every instance its own id" in stack.log_tail("coordinator-a", 40)
        wait_for(lambda: all(i in _states(settings, elsewhere)
                             and _states(settings, elsewhere)[i].terminal for i in second),
                 120, "the second wave to end")
        states = _states(settings, elsewhere)
    assert all(states[i].status is SagaStatus.COMPLETED for i in second)
    audit = audit_commands(settings, SERVICE_NAMES)
    assert audit.duplicates == {}
    assert len({c["saga_id"] for c in audit.commands}) == 120


def test_dead_letters_list_show_and_redrive(settings: Settings) -> None:
    with running_stack(settings) as stack:
        # the pick arrives before the order exists: dead-lettered as unknown_saga
        stack.send("early", DeliverSignal("warehouse_picked", {"by": "w"}))
        stack.send_raw(b"junk", b"\x00garbage")
        stack.flush()
        wait_for(lambda: len(json.loads(run_saga(settings, "dlq", "list", "--json").stdout
                                        or "[]")) == 2, 60, "two dead letters")
        letters = json.loads(run_saga(settings, "dlq", "list", "--json").stdout)
        by_reason = {x["reason"]: x for x in letters}
        assert set(by_reason) == {"unknown_saga", "undecodable"}
        assert by_reason["unknown_saga"]["key"] == "early"
        assert by_reason["undecodable"]["component"] == "coordinator"
        shown = json.loads(run_saga(settings, "dlq", "show", by_reason["undecodable"]["id"],
                                    "--json").stdout)
        assert "NotFramed" in shown["detail"]
        assert shown["value_bytes"] == 8
        human = run_saga(settings, "dlq", "list")
        assert "2 dead letter(s)" in human.stdout

        stack.send("early", StartSaga("order", order("early")))
        stack.flush()
        stack.wait_until(lambda s: "early" in s and s["early"].status is SagaStatus.WAITING,
                         60)
        redrive = run_saga(settings, "dlq", "redrive", "--reason", "unknown_saga", "--json")
        assert redrive.returncode == 0, redrive.stderr
        assert json.loads(redrive.stdout) == {"redriven": [by_reason["unknown_saga"]["id"]],
                                              "refused": []}
        states = wait_terminal(stack, ["early"])
    assert states["early"].status is SagaStatus.COMPLETED
    missing = run_saga(settings, "dlq", "show", "0:999999")
    assert missing.returncode == 2
    assert "saga dlq list" in missing.stderr
