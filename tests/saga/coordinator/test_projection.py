"""The projection is a cache of the journal: rebuildable, and rebuilt when lost."""

from __future__ import annotations

import json
import shutil

from saga.config import Settings
from saga.engine.inputs import DeliverSignal, StartSaga
from saga.stack import Stack
from tests.cli_helpers import run_saga
from tests.system import order, running_stack, wait_for, wait_terminal


def _send_orders(stack: Stack, prefix: str, count: int) -> list[str]:
    ids = [f"{prefix}-{i}" for i in range(count)]
    for i, saga_id in enumerate(ids):
        stack.send(saga_id, StartSaga("order", order(saga_id, "sku-rare" if i % 4 == 0
                                                     else "sku-1")))
        stack.send(saga_id, DeliverSignal("warehouse_picked", None))
    stack.flush()
    return ids


def test_rebuild_equals_live_and_a_deleted_projection_is_rebuilt(settings: Settings) -> None:
    with running_stack(settings) as stack:
        ids = _send_orders(stack, "r", 20)
        wait_terminal(stack, ids)
        live = json.loads(run_saga(settings, "checksum", "--json").stdout)
        rebuilt_run = run_saga(settings, "rebuild", "--json")
        assert rebuilt_run.returncode == 0, rebuilt_run.stderr
        rebuilt = json.loads(rebuilt_run.stdout)
        assert rebuilt["checksum"] == live["checksum"]
        assert rebuilt["sagas"] == live["sagas"] == 20
        assert "journal records" in rebuilt_run.stderr  # progress was shown

        stack.stop_all()
        projection = settings.state_dir / "coordinator" / "c1" / "projection"
        shutil.rmtree(projection)
        stack.start("coordinator-c1")
        wait_for(lambda: (projection / "CURRENT").exists()
                 and json.loads(run_saga(settings, "checksum", "--json").stdout or "{}")
                 .get("sagas") == 20, 90, "the projection to be rebuilt from the journal")
        after = json.loads(run_saga(settings, "checksum", "--json").stdout)
        assert after == live
        assert "caught up" in stack.log_tail("coordinator-c1", 50)

        # and it keeps working: new sagas run on the rebuilt projection
        more = _send_orders(stack, "s", 4)
        for name in stack.processes:
            stack.start(name)
        wait_terminal(stack, more)


def test_a_corrupt_projection_is_wiped_and_rebuilt(settings: Settings) -> None:
    with running_stack(settings) as stack:
        ids = _send_orders(stack, "k", 6)
        wait_terminal(stack, ids)
        live = json.loads(run_saga(settings, "checksum", "--json").stdout)
        stack.kill("coordinator-c1")
        projection = settings.state_dir / "coordinator" / "c1" / "projection"
        (projection / "CURRENT").write_text("not a manifest\n")
        stack.start("coordinator-c1")
        wait_for(lambda: "rebuilding it from saga.journal" in stack.log_tail("coordinator-c1"),
                 60, "the coordinator to notice the corrupt projection")
        wait_for(lambda: json.loads(run_saga(settings, "checksum", "--json").stdout or "{}")
                 == live, 90, "the rebuilt projection")
