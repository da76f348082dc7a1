"""One contract for every Projection implementation."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from saga.engine.state import SagaState
from saga.errors import StoreCorrupt
from saga.store.projection import (
    DeadlineChanges,
    MemoryProjection,
    Projection,
    RocksProjection,
    checksum,
    checksum_by_partition,
    checksum_stored,
    partition_report,
    run_history_keys,
)
from saga.store.timer_index import PendingTimer
from tests.saga.engine.sim import Sim
from tests.saga.engine.test_decider import ORDER, order_registry


@pytest.fixture(params=["memory", "rocks"])
def projection(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Projection]:
    store: Projection = (MemoryProjection() if request.param == "memory"
                         else RocksProjection(tmp_path / "projection"))
    yield store
    store.close()


def _sim() -> Sim:
    sim = Sim(order_registry())
    for i in range(3):
        sim.start(f"o-{i}", "order", {**ORDER, "id": f"o-{i}"})
        sim.reply(f"o-{i}", f"o-{i}:0:1", {"charge": i})
    return sim


def test_commit_then_read_back(projection: Projection) -> None:
    sim = _sim()
    entries = [e for h in sim.history.values() for e in h]
    projection.commit(sim.states, entries, {0: 17, 2: 5})
    for saga_id, state in sim.states.items():
        assert projection.get(saga_id) == state
        assert projection.history(saga_id) == sim.history[saga_id]
    assert projection.get("nope") is None
    assert projection.history("nope") == []
    assert projection.journal_offset(0) == 17
    assert projection.journal_offset(2) == 5
    assert projection.journal_offset(1) is None
    assert sorted(s.saga_id for s in projection.states()) == ["o-0", "o-1", "o-2"]


def test_commit_is_idempotent_and_offsets_advance(projection: Projection) -> None:
    sim = _sim()
    entries = [e for h in sim.history.values() for e in h]
    projection.commit(sim.states, entries, {0: 3})
    first = checksum(projection.states())
    projection.commit(sim.states, entries, {0: 9})
    assert checksum(projection.states()) == first
    assert first[1] == 3
    assert projection.journal_offset(0) == 9


def test_checksum_sees_any_difference(projection: Projection) -> None:
    sim = _sim()
    projection.commit(sim.states, [], {})
    before = checksum(projection.states())
    sim.reply("o-1", "o-1:1:1", {"reserved": 1})
    projection.commit({"o-1": sim.states["o-1"]}, [], {})
    assert checksum(projection.states())[0] != before[0]


def test_saga_ids_that_prefix_each_other_stay_apart(projection: Projection) -> None:
    sim = Sim(order_registry())
    for saga_id in ("a", "a/b", "a\x01"):
        sim.start(saga_id, "order", ORDER)
    projection.commit(sim.states, [e for h in sim.history.values() for e in h], {})
    for saga_id in ("a", "a/b", "a\x01"):
        assert projection.history(saga_id) == sim.history[saga_id]


def test_rocks_unreadable_projection_is_wiped(tmp_path: Path) -> None:
    path = tmp_path / "projection"
    path.mkdir()
    (path / "CURRENT").write_text("garbage\n")
    with pytest.raises(StoreCorrupt, match="delete the folder"):
        RocksProjection(path)
    projection, wiped = RocksProjection.open_or_rebuild(path)
    assert wiped is True
    assert list(projection.states()) == []
    projection.close()


def test_rocks_read_only_sees_committed_data(tmp_path: Path) -> None:
    writer = RocksProjection(tmp_path / "p")
    sim = _sim()
    writer.commit(sim.states, [], {0: 1})
    reader = RocksProjection(tmp_path / "p", read_only=True)
    assert reader.get("o-1") == sim.states["o-1"]
    reader.close()
    writer.close()


def test_rocks_projection_of_another_format_is_rebuilt(tmp_path: Path) -> None:
    from rocksdict import Options, Rdict

    path = tmp_path / "old"
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    old = Rdict(str(path), options)
    old.put(b"m\x00format", b"0")
    old.put(b"s\x00o-1", b'{"an": "older shape"}')
    old.close()
    with pytest.raises(StoreCorrupt, match="format"):
        RocksProjection(path, read_only=True)
    projection, wiped = RocksProjection.open_or_rebuild(path)
    assert wiped is True
    assert projection.get("o-1") is None
    projection.close()


def test_a_projection_in_use_is_never_wiped(tmp_path: Path) -> None:
    import subprocess
    import sys

    from saga.errors import StoreLocked

    path = tmp_path / "busy"
    RocksProjection(path).close()
    holder = subprocess.Popen([sys.executable, "-c", f"""
import sys, time
from pathlib import Path
from saga.store.projection import RocksProjection
p = RocksProjection(Path({str(path)!r}))
print("open", flush=True)
time.sleep(30)
"""], stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == b"open"
        with pytest.raises(StoreLocked, match="in use by another process"):
            RocksProjection.open_or_rebuild(path)
        assert (path / "CURRENT").exists()
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()


def test_checksum_by_partition_splits_the_whole() -> None:
    states = [SagaState(f"s-{n}", saga_type="order", seq=n) for n in range(10)]
    by_parity = checksum_by_partition(states, lambda saga_id: int(saga_id[2:]) % 2)
    assert set(by_parity) == {0, 1}
    assert by_parity[0] == checksum(s for s in states if int(s.saga_id[2:]) % 2 == 0)
    assert by_parity[1][1] == 5
    assert by_parity[0][0] != by_parity[1][0]


def test_a_checksum_of_the_stored_bytes_equals_that_of_the_decoded_states(tmp_path: Path
                                                                         ) -> None:
    """A rebuild hashes the stored bytes and the live side the decoded states: the two
    agree because every state's bytes survive decoding, in whatever status it is."""
    sim = Sim(order_registry())
    ids = ["o-é", "o-Z", "o-a", "o-\u65e5", "o-1"]  # RocksDB's byte order is id order
    for n, saga_id in enumerate(ids):
        sim.start(saga_id, "order", {**ORDER, "id": saga_id})
        if n % 2:
            sim.signal(saga_id, "warehouse_picked", {"at": n})
        sim.reply(saga_id, f"{saga_id}:0:1", {"charge": n})
        if n >= 2:
            sim.reply(saga_id, f"{saga_id}:1:1", outcome="BUSINESS_ERROR",
                      error="out_of_stock")
    projection = RocksProjection(tmp_path / "p")
    try:
        projection.commit(sim.states, [], {0: 4})
        assert [saga_id for saga_id, _ in projection.stored_states()] == sorted(ids)
        assert checksum_stored(projection.stored_states()) == checksum(sim.states.values())
        assert checksum_stored(projection.stored_states()) == checksum(projection.states())
        report = partition_report(projection, lambda saga_id: ord(saga_id[-1]) % 2)
        by_last = checksum_by_partition(sim.states.values(), lambda s: ord(s[-1]) % 2)
        assert {int(p): (row["checksum"], row["sagas"]) for p, row in report.items()} == \
            by_last
        assert set(by_last) == {0, 1}
        assert report["0"]["journal_offset"] == 4
    finally:
        projection.close()


def test_rocks_stores_remember_their_source(tmp_path: Path) -> None:
    store = RocksProjection(tmp_path / "p")
    assert store.store.source is None
    store.store.stamp("cluster-a/saga.journal/id-1")
    store.close()
    again = RocksProjection(tmp_path / "p", read_only=True)
    try:
        assert again.store.source == "cluster-a/saga.journal/id-1"
    finally:
        again.close()


def test_a_new_run_leaves_the_old_runs_history_behind(projection: Projection) -> None:
    from tests.saga.engine.test_evolution import registry

    sim = Sim(registry())
    sim.start("l", "loop", {"round": 1})
    projection.commit(sim.states, sim.history["l"], {})
    sim.fire_pending("l", "sleep")
    sim.reply("l", "l:1:1")  # round 1 ends: continue as new, round 2 begins
    projection.commit(sim.states, sim.history["l"][len(projection.history("l")):], {})
    kept = projection.history("l")
    assert [e.event.type_name for e in kept][:2] == ["SagaContinued", "TimerScheduled"]
    assert kept[0].seq == sim.states["l"].run_started_seq - 1
    assert kept == sim.history["l"][kept[0].seq:]
    assert projection.get("l") == sim.states["l"]


@pytest.mark.parametrize("per_batch", [True, False], ids=["a-batch-per-run", "one-batch"])
def test_only_the_current_run_is_held_however_runs_fall_in_batches(
        tmp_path: Path, per_batch: bool) -> None:
    from tests.saga.engine.test_evolution import registry

    projection = RocksProjection(tmp_path / "p")
    sim = Sim(registry())
    sim.start("l", "loop", {"round": 1})
    written = 0

    def commit() -> None:
        nonlocal written
        projection.commit(sim.states, sim.history["l"][written:], {})
        written = len(sim.history["l"])

    for round_ in (1, 2, 3):
        sim.fire_pending("l", "sleep")
        sim.reply("l", f"l:{2 * round_ - 1}:1")
        if per_batch:
            commit()
    commit()
    state = sim.states["l"]
    assert state.run == 2
    current = sim.history["l"][state.run_started_seq - 1:]
    assert projection.history("l") == current
    # nothing of the old runs is left under the saga's prefix, not even unread
    prefix, _, _ = run_history_keys(b"e\x00", "l", 0, 0)  # the projection's entry table
    assert len(list(projection.store.scan(prefix))) == len(current)
    projection.close()


def test_the_deadline_index_follows_the_states_it_is_committed_with(
        projection: Projection) -> None:
    sim = Sim(order_registry(), step_timeout=timedelta(seconds=30))
    sim.start("o-1", "order", {**ORDER, "id": "o-1"})
    issued = sim.states["o-1"]
    changes = DeadlineChanges()
    changes.track(3, None, issued)
    projection.commit({"o-1": issued}, sim.history["o-1"], {}, changes)
    due = sim.now_ms + 30_000
    assert projection.due_deadlines([3], due - 1, 10) == []
    assert projection.due_deadlines([1, 2], due, 10) == []  # another partition's
    [deadline] = projection.due_deadlines([3], due, 10)
    assert (deadline.timer_id, deadline.saga_id, deadline.due_ms, deadline.deadline) == (
        "o-1:0:timeout:1", "o-1", due, True)
    sim.reply("o-1", "o-1:0:1", {"charge": 1})  # answered: the next step's deadline runs
    changes = DeadlineChanges()
    changes.track(3, issued, sim.states["o-1"])
    projection.commit({"o-1": sim.states["o-1"]}, [], {}, changes)
    assert [t.timer_id for t in projection.due_deadlines([3], due + 10**6, 10)] == [
        "o-1:1:timeout:1"]
    fired = DeadlineChanges()
    fired.fired(projection.due_deadlines([3], due + 10**6, 10)[0])
    projection.commit({}, [], {}, fired)
    assert projection.due_deadlines([3], due + 10**6, 10) == []


def _deadlines(*timers: PendingTimer, fired: PendingTimer | None = None) -> DeadlineChanges:
    changes = DeadlineChanges()
    for timer in timers:
        changes.added[timer.timer_id] = timer
    if fired is not None:
        changes.fired(fired)
    return changes


def test_a_deadline_written_after_a_look_found_nothing_due_is_fired_on_time(
        projection: Projection) -> None:
    late = PendingTimer(2, "s-1:0:timeout:1", "s-1", 30_000, deadline=True)
    projection.commit({}, [], {}, _deadlines(late))
    assert projection.due_deadlines([2], 1_000, 10) == []  # nothing due before 30 s
    early = PendingTimer(2, "s-2:0:timeout:1", "s-2", 5_000, deadline=True)
    projection.commit({}, [], {}, _deadlines(early))
    assert projection.due_deadlines([2], 5_000, 10) == [early]
    empty = PendingTimer(4, "s-3:0:timeout:1", "s-3", 7_000, deadline=True)
    assert projection.due_deadlines([4], 1_000, 10) == []  # none held at all
    projection.commit({}, [], {}, _deadlines(empty))
    assert projection.due_deadlines([4], 7_000, 10) == [empty]


def test_a_due_deadline_is_found_again_until_its_firing_is_committed(
        projection: Projection) -> None:
    due = PendingTimer(1, "s-1:0:timeout:1", "s-1", 2_000, deadline=True)
    projection.commit({}, [], {}, _deadlines(due))
    assert projection.due_deadlines([1], 3_000, 10) == [due]
    # Its batch was aborted: nothing committed, so it is still due.
    assert projection.due_deadlines([1], 3_000, 10) == [due]
    projection.commit({}, [], {}, _deadlines(fired=due))
    assert projection.due_deadlines([1], 3_000, 10) == []


def test_the_rocksdb_index_is_not_read_while_no_deadline_can_be_due(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    projection = RocksProjection(tmp_path / "projection")
    reads: list[bytes] = []
    scan = projection.store.scan

    def counted(prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        reads.append(prefix)
        return scan(prefix, start)

    monkeypatch.setattr(projection.store, "scan", counted)
    try:
        projection.commit({}, [], {}, _deadlines(
            PendingTimer(0, "s-1:0:timeout:1", "s-1", 30_000, deadline=True)))
        for now_ms in (1_000, 2_000, 29_999):
            assert projection.due_deadlines([0, 1], now_ms, 10) == []
        assert len(reads) == 2  # each partition once: 0 is quiet until 30 s, 1 for good
        assert len(projection.due_deadlines([0, 1], 30_000, 10)) == 1
        assert len(reads) == 3
        # A rebuild worker's share brings deadlines this projection never wrote.
        share = RocksProjection(tmp_path / "share")
        share.commit({}, [], {}, _deadlines(
            PendingTimer(1, "s-2:0:timeout:1", "s-2", 3_000, deadline=True)))
        share.store.export(tmp_path / "share.sst")
        share.close()
        projection.ingest(tmp_path / "share.sst")
        assert [t.saga_id for t in projection.due_deadlines([1], 3_000, 10)] == ["s-2"]
    finally:
        projection.close()
