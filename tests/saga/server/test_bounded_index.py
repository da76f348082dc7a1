"""The index's reads a request makes, each bounded (issue 19, item 7), Kafka aside:
listings that stop after ``scan_limit`` rows and lose or repeat no saga across their
cursors, histories and dead letters a page at a time, and what a dashboard polls kept
as counters (durations within 2 %, timers, letters counted once)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from saga.engine import events as ev
from saga.engine.lifecycle import SagaStatus
from saga.engine.state import apply
from saga.store.visibility import (
    ListQuery,
    SagaChange,
    VisibilityIndex,
    bucket_top,
    duration_bucket,
    percentiles,
)
from tests.saga.server.index_builder import BASE_MS, add, letter, saga


@pytest.fixture
def index(tmp_path: Path) -> Iterator[VisibilityIndex]:
    opened = VisibilityIndex(tmp_path / "index")
    yield opened
    opened.close()


def _every(index: VisibilityIndex, query: ListQuery, scan_limit: int) -> tuple[list[str], int]:
    ids: list[str] = []
    pages = 0
    cursor = None
    while True:
        page = index.page(ListQuery(**{**query.__dict__, "cursor": cursor}),
                          scan_limit=scan_limit)
        pages += 1
        ids += [s["saga_id"] for s in page.sagas]
        cursor = page.next_cursor
        if cursor is None:
            return ids, pages


def test_capped_listings_go_on_from_their_cursor_and_lose_nothing(
        index: VisibilityIndex) -> None:
    done = ev.SagaCompleted(None, compensated=False)
    rare = {17, 480, 481, 999}
    add(index, *(saga(f"s-{n:04d}", *([done] if n in rare else []), at_ms=BASE_MS + n)
                 for n in range(1000)))
    wanted = sorted((f"s-{n:04d}" for n in rare), reverse=True)
    # status + id prefix: the index cannot narrow both, every row is read
    by_prefix, pages = _every(index, ListQuery(SagaStatus.COMPLETED, id_prefix="s-",
                                               limit=2), scan_limit=100)
    assert by_prefix == sorted(wanted)
    assert pages == 10  # 1000 rows, 100 a page: never more per request
    # a filter only summaries can answer
    by_version, pages = _every(index, ListQuery(version=7, limit=5), scan_limit=250)
    assert (by_version, pages) == ([], 4)
    by_time, _ = _every(index, ListQuery(ended_after_ms=BASE_MS, limit=3), scan_limit=64)
    assert by_time == wanted
    # plain listings are taken as read: a page is full, however few rows it may read
    page = index.page(ListQuery(SagaStatus.COMPLETED, limit=3), scan_limit=100)
    assert [s["saga_id"] for s in page.sagas] == wanted[:3]
    everything, _ = _every(index, ListQuery(limit=333), scan_limit=100)
    assert len(everything) == len(set(everything)) == 1000


def test_histories_and_letters_come_a_page_at_a_time(index: VisibilityIndex) -> None:
    big = "x" * 300_000
    add(index, saga("h-1", *[ev.SignalReceived("s", {"n": n, "pad": big if n < 40 else ""})
                             for n in range(2500)]))
    seen: list[int] = []
    cursor = None
    while True:
        page = index.history_page("h-1", cursor, limit=1000, max_bytes=4 * 1024 * 1024)
        assert len(page.rows) <= 1000
        assert sum(len(r) for r in page.rows) <= 4 * 1024 * 1024 or len(page.rows) == 1
        seen += [int(r.split(b'"seq":')[1].split(b",")[0]) for r in page.rows]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == list(range(2501))
    index.apply([], [letter(n % 3, n, b"v" * 1000, "a" if n % 4 else "b")
                     for n in range(300)], {}, {})
    index.apply([], [letter(0, 0, b"again")], {}, {})  # a replayed letter: counted once
    assert index.dead_letter_count() == 300
    shown = index.letters_page("b", limit=1000, scan_limit=120)
    assert len(shown.sagas) < 75
    assert shown.next_cursor is not None
    assert all("value_b64" not in x for x in shown.sagas)


def test_counters_answer_what_dashboards_poll(index: VisibilityIndex) -> None:
    rng = random.Random(7)
    took = [int(rng.lognormvariate(7, 2)) for _ in range(5000)]
    add(index, *(saga(f"d-{n}", ev.TimerScheduled(f"d-{n}:0:t:0", 0, ev.TimerPurpose.SLEEP,
                                                  BASE_MS + (-1 if n % 2 else 10**6)))
                 for n in range(len(took))))
    timers = index.timers(BASE_MS, limit=10, scan_limit=1000)
    assert (timers["pending"], timers["overdue"], timers["overdue_capped"]) == (5000, 1000,
                                                                                 True)
    # the sagas end after `took` ms each: their durations, kept per 2 % bucket
    for n, ms in enumerate(took):
        state = index.state(f"d-{n}")
        assert state is not None
        fired = ev.Entry(f"d-{n}", state.seq, state.started_at_ms + ms,
                         ev.TimerFired(f"d-{n}:0:t:0"))
        end = ev.Entry(f"d-{n}", state.seq + 1, state.started_at_ms + ms,
                       ev.SagaCompleted(None, compensated=False))
        index.apply([SagaChange(state, apply(apply(state, fired), end), [fired, end])], [],
                    {}, {})
    exact = sorted(took)
    shown = index.durations()["order"]
    assert (shown["count"], shown["max"]) == (5000, exact[-1])
    for name, share in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
        truth = exact[int(share * len(exact))]
        assert abs(shown[name] - truth) <= max(1, truth * 0.021), (name, shown, truth)
    assert index.timers(BASE_MS)["pending"] == 0
    assert index.counts()["COMPLETED"] == 5000


def test_buckets_hold_what_they_say() -> None:
    for ms in [0, 1, 2, 3, 49, 50, 51, 999, 1000, 12345, 10**7, 10**11]:
        top = bucket_top(duration_bucket(ms))
        assert top >= ms
        assert top <= max(ms + 1, ms * 1.021)
    assert percentiles({}, 0)["count"] == 0
    assert percentiles({duration_bucket(400): 1}, 400)["p50"] == 400
