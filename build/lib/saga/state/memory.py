"""A projection in a dict: for unit tests of code above the port, and the contract tests."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

from saga.engine import events as ev
from saga.engine.state import SagaState


class MemoryProjection:
    def __init__(self) -> None:
        self._states: dict[str, SagaState] = {}
        self._entries: dict[str, list[ev.Entry]] = {}
        self._offsets: dict[int, int] = {}

    def get(self, saga_id: str) -> SagaState | None:
        return self._states.get(saga_id)

    def history(self, saga_id: str) -> list[ev.Entry]:
        return list(self._entries.get(saga_id, []))

    def journal_offset(self, partition: int) -> int | None:
        return self._offsets.get(partition)

    def commit(self, states: Mapping[str, SagaState], entries: Iterable[ev.Entry],
               offsets: Mapping[int, int]) -> None:
        for entry in entries:
            held = self._entries.setdefault(entry.saga_id, [])
            if entry.seq == len(held):
                held.append(entry)
        self._states.update(states)
        self._offsets.update(offsets)

    def states(self) -> Iterator[SagaState]:
        return iter(list(self._states.values()))

    def close(self) -> None:
        pass
