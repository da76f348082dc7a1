"""A changed workflow is caught before a deploy (verify-replay) and parks at runtime."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from saga.config import Settings
from saga.engine.inputs import DeliverSignal, StartSaga
from saga.engine.lifecycle import SagaStatus
from tests.cli_helpers import run_saga
from tests.system import order, running_stack, wait_terminal

CHANGED = '''
from saga import SagaContext, workflow


@workflow("order", version=1)
async def order(ctx: SagaContext, order: dict) -> dict:
    # reserve before charging: not the path the journal recorded
    await ctx.call("inventory", "reserve", order, compensate=("inventory", "release"))
    await ctx.call("payments", "charge", order, compensate=("payments", "refund"))
    await ctx.wait_signal("warehouse_picked")
    return {"status": "completed"}
'''


def test_verify_replay_and_runtime_parking(settings: Settings, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "changed_order.py").write_text(CHANGED)
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    with running_stack(settings) as stack:
        stack.send("v-1", StartSaga("order", order("v-1")))
        stack.send("v-1", DeliverSignal("warehouse_picked", None))
        stack.send("v-2", StartSaga("order", order("v-2")))
        stack.flush()
        wait_terminal(stack, ["v-1"])
        stack.wait_until(lambda s: "v-2" in s and s["v-2"].status is SagaStatus.WAITING, 60)

        same = run_saga(settings, "verify-replay", "--json")
        assert same.returncode == 0, same.stdout + same.stderr
        assert json.loads(same.stdout) == {"checked": 2, "diverging": []}

        changed = run_saga(settings, "verify-replay", "--workflows", "changed_order", "--json")
        assert changed.returncode == 1, changed.stdout + changed.stderr
        report = json.loads(changed.stdout)
        assert report["checked"] == 2
        assert sorted(d["saga_id"] for d in report["diverging"]) == ["v-1", "v-2"]
        assert "the journal has a call to payments.charge, the code now calls " \
               "inventory.reserve" in report["diverging"][0]["divergence"]
        human = run_saga(settings, "verify-replay", "--workflows", "changed_order")
        assert "2 histories replayed, 2 would diverge" in human.stdout

        # deploy the changed code anyway: the waiting saga parks, the coordinator goes on
        stack.stop_all()
        stack.workflows = "changed_order"
        for name in stack.processes:
            stack.start(name)
        stack.send("v-2", DeliverSignal("warehouse_picked", None))
        stack.send("v-3", StartSaga("order", order("v-3")))
        stack.send("v-3", DeliverSignal("warehouse_picked", None))
        stack.flush()
        states = wait_terminal(stack, ["v-3"])
        states = stack.wait_until(lambda s: s["v-2"].status is SagaStatus.PARKED, 60)
    parked = states["v-2"]
    assert parked.status is SagaStatus.PARKED
    assert parked.parked_reason == "non_determinism"
    assert "inventory.reserve" in parked.error
    status = json.loads(run_saga(settings, "status", "v-2", "--json").stdout)
    assert status["status"] == "PARKED"
    assert status["error"].startswith("non_determinism: step 0")
