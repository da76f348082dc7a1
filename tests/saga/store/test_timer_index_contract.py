"""One contract for every TimerIndex implementation."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from saga.store.timer_index import MemoryTimerIndex, PendingTimer, RocksTimerIndex, TimerIndex


@pytest.fixture(params=["memory", "rocks"])
def index(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TimerIndex]:
    store: TimerIndex = (MemoryTimerIndex() if request.param == "memory"
                         else RocksTimerIndex(tmp_path / "timers"))
    yield store
    store.close()


def t(partition: int, timer_id: str, due_ms: int) -> PendingTimer:
    return PendingTimer(partition, timer_id, timer_id.split(":")[0], due_ms)


def test_due_timers_come_earliest_first_and_stop_at_now(index: TimerIndex) -> None:
    index.apply([t(0, "a:0:sleep:0", 300), t(0, "b:0:sleep:0", 100), t(0, "c:0:sleep:0", 200),
                 t(0, "d:0:sleep:0", 10_000)], [], {0: 4})
    assert [x.timer_id for x in index.due([0], 250, 100)] == ["b:0:sleep:0", "c:0:sleep:0"]
    assert index.due([0], 50, 100) == []
    assert index.offset(0) == 4
    assert index.offset(1) is None


def test_only_the_asked_partitions(index: TimerIndex) -> None:
    index.apply([t(0, "a:0:x:0", 1), t(1, "b:0:x:0", 1), t(2, "c:0:x:0", 1)], [], {})
    assert sorted(x.timer_id for x in index.due([0, 2], 5, 10)) == ["a:0:x:0", "c:0:x:0"]


def test_removal_and_rescheduling(index: TimerIndex) -> None:
    index.apply([t(0, "a:0:x:0", 100), t(0, "b:0:x:0", 100)], [], {})
    index.apply([], ["a:0:x:0", "never-there"], {0: 9})
    assert [x.timer_id for x in index.due([0], 1000, 10)] == ["b:0:x:0"]
    index.apply([t(0, "b:0:x:0", 5000)], [], {})  # the same timer, a new due time
    assert index.due([0], 1000, 10) == []
    assert [x.due_ms for x in index.due([0], 6000, 10)] == [5000]


def test_a_storm_is_served_fairly_and_in_bounded_slices(index: TimerIndex) -> None:
    storm = [t(p, f"s{p}-{n}:0:x:0", n) for p in range(3) for n in range(500)]
    index.apply(storm, [], {})
    first = index.due([0, 1, 2], 10_000, 90)
    assert len(first) == 90
    assert {x.partition for x in first} == {0, 1, 2}
    assert sum(1 for x in first if x.partition == 0) == 30


def test_stats(index: TimerIndex) -> None:
    index.apply([t(0, "a:0:x:0", 100), t(0, "b:0:x:0", 900), t(1, "c:0:x:0", 50)], [], {})
    stats = index.stats(0, 500)
    assert (stats.pending, stats.overdue, stats.next_due_ms) == (2, 1, 100)
    empty = index.stats(7, 500)
    assert (empty.pending, empty.overdue, empty.next_due_ms) == (0, 0, None)


def test_the_pending_count_follows_every_change(index: TimerIndex) -> None:
    index.apply([t(0, "a:0:x:0", 100), t(0, "b:0:x:0", 100)], [], {})
    index.apply([t(0, "a:0:x:0", 700)], [], {})  # rescheduled: still one timer
    index.apply([], ["b:0:x:0", "b:0:x:0", "never-there"], {})  # gone once; unknown: none
    index.apply([t(1, "c:0:x:0", 5)], [], {})
    assert (index.stats(0, 0).pending, index.stats(1, 0).pending) == (1, 1)
    index.apply([], ["a:0:x:0", "c:0:x:0"], {})
    assert (index.stats(0, 0).pending, index.stats(1, 0).pending) == (0, 0)


def test_rocks_survives_reopen(tmp_path: Path) -> None:
    index = RocksTimerIndex(tmp_path / "timers")
    index.apply([t(3, "a:0:x:0", 42)], [], {3: 7})
    index.close()
    again = RocksTimerIndex(tmp_path / "timers", read_only=True)
    assert [x.timer_id for x in again.due([3], 100, 10)] == ["a:0:x:0"]
    assert again.offset(3) == 7
    again.close()
