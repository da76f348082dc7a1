"""Local stores that are caches of a topic (the projection of saga.journal, the timer
index of saga.timers, a service's store of <service>.state): opening one only if it is
still a cache of *this* cluster's topic.

A store records the source it was built from (``<cluster id>/<topic>/<topic id>``). One
built from another cluster, another incarnation of the topic, or holding offsets past
the topic's end is wiped and rebuilt with a line saying why: offsets mean nothing across
clusters, and resuming would mix another cluster's data into this one. An unreadable
store is rebuilt the same way; a locked one never is (another process uses it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol, TypeVar

from saga.store.rocksdb import RocksStore, open_or_wipe, wipe


class TopicCache(Protocol):
    @property
    def store(self) -> RocksStore: ...

    def close(self) -> None: ...


_Cache = TypeVar("_Cache", bound=TopicCache)
#: The stored offsets beyond the topic's end (partition -> offset).
PastEnd = Callable[[Mapping[int, int]], Mapping[int, int]]


def open_topic_cache(open_store: Callable[[Path], _Cache], path: Path, *, source: str,
                     topic: str, past_end: PastEnd, say: Callable[[str], None]) -> _Cache:
    """The store at ``path``, emptied first when it is not a cache of ``source``."""
    cache, wiped = open_or_wipe(open_store, path)
    try:
        why = "it was unreadable" if wiped else rebuild_reason(cache.store, source, past_end)
    except BaseException:
        cache.close()  # its RocksDB lock must not outlive this attempt
        raise
    if why:
        if not wiped:
            cache.close()
            wipe(path)
            cache = open_store(path)
        say(f"{path.name} at {path}: {why}; rebuilding it from {topic}")
    cache.store.stamp(source)
    return cache


def rebuild_reason(store: RocksStore, source: str, past_end: PastEnd) -> str:
    """Why ``store`` is not a cache of ``source`` (empty when it is)."""
    if store.source is not None and store.source != source:
        return f"it was built from {store.source}, the cluster now has {source}"
    beyond = dict(past_end(store.offsets()))
    if beyond:
        return (f"its offsets {beyond} are past the end of the topic (another cluster, or "
                "the topic was recreated)")
    return ""
