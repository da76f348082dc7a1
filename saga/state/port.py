"""The projection port: what the coordinator and the CLI need from local state.

A projection holds, per saga, the folded state and the journal entries, and per journal
partition the next offset to read. `commit` applies one batch atomically (data and
offsets together, so they can never disagree). Everything in it can be rebuilt from
saga.journal; `checksum` is how a rebuild proves it equals the live copy.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Protocol

import orjson

from saga.engine import events as ev
from saga.engine.state import SagaState
from saga.errors import SagaError


class ProjectionCorrupt(SagaError):
    """The local projection cannot be read; delete it and it is rebuilt from the journal."""


class ProjectionLocked(SagaError):
    """Another process holds the projection open for writing: never wipe it."""


class Projection(Protocol):
    def get(self, saga_id: str) -> SagaState | None: ...

    def history(self, saga_id: str) -> list[ev.Entry]: ...

    def journal_offset(self, partition: int) -> int | None:
        """The next saga.journal offset this projection has not applied, if any."""
        ...

    def commit(self, states: Mapping[str, SagaState], entries: Iterable[ev.Entry],
               offsets: Mapping[int, int]) -> None: ...

    def states(self) -> Iterator[SagaState]: ...

    def close(self) -> None: ...


def entry_to_json(entry: ev.Entry) -> bytes:
    return orjson.dumps({"saga_id": entry.saga_id, "seq": entry.seq, "at_ms": entry.at_ms,
                         "type": entry.event.type_name, "body": entry.event})


def entry_from_json(data: bytes) -> ev.Entry:
    raw: dict[str, Any] = orjson.loads(data)
    return ev.Entry(raw["saga_id"], raw["seq"], raw["at_ms"],
                    ev.from_body(raw["type"], raw["body"]))


def state_to_json(state: SagaState) -> bytes:
    return state.to_bytes()


def checksum_by_partition(states: Iterable[SagaState], partition_of: Callable[[str], int]
                          ) -> dict[int, tuple[str, int]]:
    """``checksum`` of each partition's sagas, keyed by partition."""
    groups: dict[int, list[SagaState]] = {}
    for state in states:
        groups.setdefault(partition_of(state.saga_id), []).append(state)
    return {p: checksum(group) for p, group in sorted(groups.items())}


def checksum(states: Iterable[SagaState]) -> tuple[str, int]:
    """SHA-256 over every saga's folded state, in saga id order; and the saga count."""
    digest = hashlib.sha256()
    count = 0
    for state in sorted(states, key=lambda s: s.saga_id):
        digest.update(state.saga_id.encode())
        digest.update(b"\x00")
        digest.update(state_to_json(state))
        count += 1
    return digest.hexdigest(), count
