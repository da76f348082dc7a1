"""A service's local state: its business state and the reply each step got. A cache of
the service's ``<service>.state`` changelog topic, rebuildable from it at any time.

Every write is a ``StateChange`` of one key, with a version: ``data/<key>`` for what a
handler put, ``step/<idempotency key>`` for the reply a step (every attempt of it) got.
The changelog holds each change in the partition of the command that made it; an
instance restores the partitions it is assigned, so the state moves with the command
partition, not with the machine. Of two changes of a key the higher version wins, which
is how one instance restoring several partitions ends with the newest value of a key
that more than one partition wrote (inventory's stock levels).

RocksDB keys: ``v\\0<key>`` -> 8-byte big-endian version + JSON value; the changelog
offsets and its source in RocksStore.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from saga.store.rocksdb import RocksStore

FORMAT = b"2"
_VALUE = b"v\x00"
_CLOCK = b"m\x00clock"
_VERSION = struct.Struct(">Q")
#: Prefixes of the two kinds of key.
DATA, STEP = "data/", "step/"


@dataclass(frozen=True)
class StateChange:
    key: str
    version: int
    value: Any  # JSON-shaped; None is a stored null
    command_id: str  # whose handling wrote it


@dataclass(frozen=True)
class StepReply:
    """The reply a step got, and from which attempt's command."""

    command_id: str
    reply: dict[str, Any]


class VersionClock:
    """Versions for one instance's writes: microseconds, never going backwards, always
    past every version it has seen (restored or written)."""

    def __init__(self, last: int = 0) -> None:
        self.last = last

    def next(self) -> int:
        self.last = max(time.time_ns() // 1000, self.last + 1)
        return self.last

    def observe(self, version: int) -> None:
        self.last = max(self.last, version)


class ServiceStore:
    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self._store = RocksStore(path, fmt=FORMAT, what="service store",
                                 rebuilt_from="its <service>.state topic",
                                 read_only=read_only)
        raw = self._store.get(_CLOCK)
        self.clock = VersionClock(_VERSION.unpack(raw)[0] if raw is not None else 0)

    @property
    def store(self) -> RocksStore:
        return self._store

    def get(self, key: str) -> Any:
        held = self._read(DATA + key)
        return None if held is None else held[1]

    def scan(self, prefix: str) -> Iterator[tuple[str, Any]]:
        start = len(_VALUE) + len(DATA)
        for raw_key, raw in self._store.scan(_VALUE + (DATA + prefix).encode()):
            yield raw_key[start:].decode(), orjson.loads(raw[_VERSION.size:])

    def step_reply(self, idempotency_key: str) -> StepReply | None:
        held = self._read(STEP + idempotency_key)
        if held is None:
            return None
        return StepReply(held[1]["command_id"], held[1]["reply"])

    def version(self, key: str) -> int | None:
        raw = self._store.get(_VALUE + key.encode())
        return None if raw is None else int(_VERSION.unpack(raw[:_VERSION.size])[0])

    def apply(self, changes: Iterable[StateChange], offsets: Mapping[int, int], *,
              newer_only: bool = False) -> int:
        """Write ``changes`` and the changelog ``offsets`` (next to read, per partition)
        in one batch; ``newer_only`` skips a change whose key holds a higher version (a
        restore). Returns the changes written."""
        batch = self._store.batch()
        written = 0
        newest: dict[str, int] = {}
        for change in changes:
            held = newest.get(change.key)
            if held is None and newer_only:
                held = self.version(change.key)
            if newer_only and held is not None and held >= change.version:
                continue
            newest[change.key] = change.version
            batch.put(_VALUE + change.key.encode(),
                      _VERSION.pack(change.version) + orjson.dumps(change.value))
            self.clock.observe(change.version)
            written += 1
        batch.put(_CLOCK, _VERSION.pack(self.clock.last))
        self._store.put_offsets(batch, offsets)
        self._store.write(batch)
        return written

    def close(self) -> None:
        self._store.close()

    def _read(self, key: str) -> tuple[int, Any] | None:
        raw = self._store.get(_VALUE + key.encode())
        if raw is None:
            return None
        return _VERSION.unpack(raw[:_VERSION.size])[0], orjson.loads(raw[_VERSION.size:])
