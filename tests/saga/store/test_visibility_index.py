"""The visibility index, Kafka aside: it folds changes into summaries, histories and the
indexes that list them, and answers the queries the API serves."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from saga.engine import events as ev
from saga.engine.lifecycle import SagaStatus
from saga.engine.state import SagaState, apply
from saga.store.visibility import ListQuery, SagaChange, VisibilityIndex


@pytest.fixture
def index(tmp_path: Path) -> Iterator[VisibilityIndex]:
    opened = VisibilityIndex(tmp_path / "index")
    yield opened
    opened.close()


class Sagas:
    """Writes sagas into the index the way the feed does: a change per batch."""

    def __init__(self, index: VisibilityIndex) -> None:
        self.index = index
        self.states: dict[str, SagaState] = {}

    def add(self, saga_id: str, *events: ev.Event, at_ms: int = 1000, saga_type: str = "order",
            started_by: str | None = None) -> SagaState:
        before = self.states.get(saga_id)
        state = before or SagaState(saga_id)
        entries = []
        if before is None:
            events = (ev.SagaStarted(saga_type, 1, {"id": saga_id}), *events)
        for event in events:
            entry = ev.Entry(saga_id, state.seq, at_ms, event)
            state = apply(state, entry)
            entries.append(entry)
        self.index.apply([SagaChange(before, state, entries, started_by)], [], {0: 1}, {})
        self.states[saga_id] = state
        return state


def ids(sagas: list[dict[str, Any]]) -> list[str]:
    return [s["saga_id"] for s in sagas]


def test_summary_history_and_who_started_it(index: VisibilityIndex) -> None:
    sagas = Sagas(index)
    sagas.add("o-1", started_by="saga.inbox/0/7")
    sagas.add("o-1", ev.SagaCompleted({"ok": True}, compensated=False), at_ms=1500)
    summary = index.summary("o-1")
    assert summary is not None
    assert {k: summary[k] for k in ("saga_id", "type", "status", "result", "error")} == {
        "saga_id": "o-1", "type": "order", "status": "COMPLETED", "result": {"ok": True},
        "error": None}
    assert summary == sagas.states["o-1"].summary()  # the same as `saga status --json`
    assert [r.count(b'"type"') for r in index.history_json("o-1")] == [1, 1]
    assert index.started_by("o-1") == "saga.inbox/0/7"
    assert index.summary("nope") is None
    assert index.journal_offsets() == {0: 1}


def test_listing_newest_first_by_status_and_type_with_cursors(index: VisibilityIndex) -> None:
    sagas = Sagas(index)
    for n in range(7):
        sagas.add(f"o-{n}", at_ms=1000 + n, saga_type="order" if n % 2 else "refund")
    sagas.add("o-3", ev.SagaCompleted(None, compensated=False), at_ms=2000)
    sagas.add("o-5", ev.SagaFailed("boom"), at_ms=2000)
    assert ids(index.page(ListQuery()).sagas) == [f"o-{n}" for n in range(6, -1, -1)]
    assert ids(index.page(ListQuery(status=SagaStatus.RUNNING)).sagas) == [
        "o-6", "o-4", "o-2", "o-1", "o-0"]
    assert ids(index.page(ListQuery(saga_type="order")).sagas) == ["o-5", "o-3", "o-1"]
    assert ids(index.page(ListQuery(status=SagaStatus.RUNNING, saga_type="order")).sagas) \
        == ["o-1"]
    first = index.page(ListQuery(limit=3))
    second = index.page(ListQuery(limit=3, cursor=first.next_cursor))
    third = index.page(ListQuery(limit=3, cursor=second.next_cursor))
    assert (ids(first.sagas), ids(second.sagas), ids(third.sagas)) == (
        ["o-6", "o-5", "o-4"], ["o-3", "o-2", "o-1"], ["o-0"])
    assert third.next_cursor is None
    # started in [1002, 1005): newest first
    assert ids(index.page(ListQuery(started_after_ms=1002, started_before_ms=1005)).sagas) \
        == ["o-4", "o-3", "o-2"]
    assert ids(index.page(ListQuery(ended_after_ms=1999)).sagas) == ["o-5", "o-3"]
    assert ids(index.page(ListQuery(id_prefix="o-1")).sagas) == ["o-1"]
    assert index.counts()["RUNNING"] == 5
    assert (index.counts()["COMPLETED"], index.counts()["FAILED"]) == (1, 1)


def test_durations_timers_and_dead_letters(index: VisibilityIndex) -> None:
    sagas = Sagas(index)
    sagas.add("o-1", ev.TimerScheduled("o-1:0:sleep:0", 0, ev.TimerPurpose.SLEEP, 5000))
    sagas.add("o-2", ev.TimerScheduled("o-2:0:sleep:0", 0, ev.TimerPurpose.SLEEP, 3000))
    timers = index.timers(now_ms=4000)
    assert (timers["pending"], timers["overdue"], timers["next_due_ms"]) == (2, 1, 3000)
    assert [t["saga_id"] for t in timers["timers"]] == ["o-2", "o-1"]
    sagas.add("o-2", ev.TimerFired("o-2:0:sleep:0"), ev.SagaCompleted(None, compensated=False),
              at_ms=1400)
    assert index.timers(now_ms=4000)["pending"] == 1
    assert index.durations() == {"order": {"count": 1, "p50": 400, "p90": 400, "p99": 400,
                                           "max": 400}}
    index.apply([], [{"id": "0:9", "partition": 0, "offset": 9, "reason": "undecodable",
                      "detail": "x"}], {}, {0: 10})
    assert [x["id"] for x in index.dead_letters()] == ["0:9"]
    assert index.dead_letters("other") == []
    assert index.dead_letter(0, 9) is not None
    assert index.dlq_offsets() == {0: 10}


def test_a_bad_cursor_is_a_clear_error(index: VisibilityIndex) -> None:
    from saga.errors import ConfigError

    with pytest.raises(ConfigError, match="not one this server gave out"):
        index.page(ListQuery(cursor="***"))
