"""The coordinator's cache of committed states is bounded by count and by bytes."""

from __future__ import annotations

from saga.coordinator.state_cache import StateCache
from saga.engine.state import SagaState


def states(*ids: str) -> dict[str, SagaState]:
    return {i: SagaState(i) for i in ids}


def test_bounded_by_bytes_least_recently_committed_first() -> None:
    cache = StateCache(max_count=100, max_bytes=250)
    cache.put_all(states("a", "b"), {"a": 100, "b": 100})
    cache.put_all(states("a"), {"a": 120})  # a again: now the most recent, and bigger
    assert (len(cache), cache.bytes) == (2, 220)
    cache.put_all(states("c"), {"c": 100})  # 320 > 250: b goes first, then it fits
    assert [cache.get(i) is not None for i in "abc"] == [True, False, True]
    assert cache.bytes == 220


def test_bounded_by_count_and_cleared() -> None:
    cache = StateCache(max_count=2, max_bytes=10**9)
    cache.put_all(states("a", "b", "c"), {"a": 1, "b": 1, "c": 1})
    assert cache.get("a") is None
    assert cache.get("c") is not None
    cache.clear()
    assert (len(cache), cache.bytes, cache.get("c")) == (0, 0, None)


def test_one_state_bigger_than_the_bound_is_not_kept() -> None:
    cache = StateCache(max_count=10, max_bytes=50)
    cache.put_all(states("huge"), {"huge": 51})
    assert (len(cache), cache.bytes) == (0, 0)
