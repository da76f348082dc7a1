"""The projection is a cache of the journal: rebuildable, and rebuilt when lost."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from saga.config import Settings
from saga.dev.audit import read_topic
from saga.dev.stack import Stack
from saga.engine.inputs import DeliverSignal, StartSaga
from saga.engine.lifecycle import SagaStatus
from saga.engine.state import SagaState
from saga.layout import StateLayout
from saga.store.projection import RocksProjection
from saga.store.timer_index import PendingTimer, RocksTimerIndex
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


def _stored(path: Path) -> dict[bytes, bytes]:
    projection = RocksProjection(path, read_only=True)
    try:
        return dict(projection.store.scan(b""))
    finally:
        projection.close()


def test_rebuild_equals_live_and_a_deleted_projection_is_rebuilt(settings: Settings,
                                                                 tmp_path: Path) -> None:
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

        # Folded by two worker processes, each a share of the partitions, the rebuilt
        # projection holds the very keys one process writes: states, histories,
        # reply deadlines, journal offsets.
        # A parallel rebuild killed mid-way left its shares beside its folder; the next
        # rebuild into that folder removes them.
        killed = tmp_path / ".rebuilt-2.rebuild-k1lled00" / "share-0"
        killed.mkdir(parents=True)
        (killed / "000007.sst").write_bytes(b"half a share")
        for workers in (1, 2):
            run = run_saga(settings, "rebuild", "--workers", str(workers), "--into",
                           str(tmp_path / f"rebuilt-{workers}"), "--json")
            assert run.returncode == 0, run.stderr
            assert json.loads(run.stdout)["workers"] == workers
            assert json.loads(run.stdout)["checksum"] == live["checksum"]
        serial, parallel = _stored(tmp_path / "rebuilt-1"), _stored(tmp_path / "rebuilt-2")
        assert serial == parallel
        assert any(key.startswith(b"e\x00") for key in serial)  # histories are in it
        assert sorted(p.name for p in tmp_path.iterdir()) == ["rebuilt-1", "rebuilt-2"]
        # A folder that holds a projection already is not folded into again.
        again = run_saga(settings, "rebuild", "--into", str(tmp_path / "rebuilt-1"))
        assert again.returncode != 0
        assert "already holds files" in again.stderr
        assert "new or empty folder" in again.stderr
        assert _stored(tmp_path / "rebuilt-1") == serial

        stack.stop_all()
        projection = StateLayout(settings.state_dir).projection("c1")
        shutil.rmtree(projection)
        # The wiped store's partitions are folded as `saga rebuild` folds them, in worker
        # processes (by default only for a long journal).
        stack.processes["coordinator-c1"].env["SAGA_REBUILD_WORKERS"] = "2"
        stack.start("coordinator-c1")
        wait_for(lambda: (projection / "CURRENT").exists()
                 and json.loads(run_saga(settings, "checksum", "--json").stdout or "{}")
                 .get("sagas") == 20, 90, "the projection to be rebuilt from the journal")
        after = json.loads(run_saga(settings, "checksum", "--json").stdout)
        assert after == live
        # The projection is readable once the shares are ingested; the coordinator says
        # how it caught up a moment later, after the timers' catch-up.
        wait_for(lambda: "journal entries (in 2 worker processes)"
                 in stack.log_tail("coordinator-c1", 50), 60,
                 "the coordinator to say it caught up in two worker processes")
        assert not list(projection.parent.glob(f".{projection.name}.rebuild-*"))  # no shares
        live_keys = {k: v for k, v in _stored(projection).items() if k != b"m\x00source"}
        assert live_keys == _stored(tmp_path / "rebuilt-1")  # every key but where it is from

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
        projection = StateLayout(settings.state_dir).projection("c1")
        (projection / "CURRENT").write_text("not a manifest\n")
        stack.start("coordinator-c1")
        wait_for(lambda: "rebuilding it from saga.journal" in stack.log_tail("coordinator-c1"),
                 60, "the coordinator to notice the corrupt projection")
        wait_for(lambda: json.loads(run_saga(settings, "checksum", "--json").stdout or "{}")
                 == live, 90, "the rebuilt projection")


def test_state_from_another_cluster_is_rebuilt_not_resumed(settings: Settings) -> None:
    """A state folder last used against another cluster (or a recreated topic): its
    projection and timer index say so, are rebuilt with a line saying why, and nothing
    of the old cluster's sagas reaches this one."""
    layout = StateLayout(settings.state_dir)
    ghost = SagaState("ghost", saga_type="order", version=1, status=SagaStatus.WAITING,
                      seq=3)
    projection = RocksProjection(layout.projection("c1"))
    projection.commit({"ghost": ghost}, [], {0: 5_000_000})
    projection.store.stamp("other-cluster/saga.journal/x")
    projection.close()
    index = RocksTimerIndex(layout.timer_index("c1"))
    index.apply([PendingTimer(0, "ghost:2:wait:0", "ghost", 1)], [], {0: 7})
    index.store.stamp("other-cluster/saga.timers/x")
    index.close()
    with running_stack(settings) as stack:
        ids = _send_orders(stack, "n", 3)
        wait_terminal(stack, ids)
        log = stack.log_tail("coordinator-c1", 80)
        assert "it was built from other-cluster/saga.journal/x" in log
        assert "rebuilding it from saga.journal" in log
        assert "it was built from other-cluster/saga.timers/x" in log
        assert "rebuilding it from saga.timers" in log
        states = stack.states()
    assert "ghost" not in states
    assert sorted(states) == sorted(ids)
    inbox = read_topic(settings.kafka, settings.topic("saga.inbox"))
    assert not [k for k, _, _ in inbox if k == b"ghost"]  # its timer never fired here
