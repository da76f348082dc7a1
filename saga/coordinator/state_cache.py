"""The coordinator's write-through cache of committed saga states.

The projection is written only by the coordinator, so a state cached after its commit
is the projection's own: a hit saves a RocksDB read and a JSON parse per input. The
cache is bounded by count and by the bytes of the states it holds (their size as the
projection stored them), so a few huge sagas cannot grow the process without limit.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping

from saga.engine.state import SagaState


class StateCache:
    def __init__(self, max_count: int, max_bytes: int) -> None:
        self.max_count = max_count
        self.max_bytes = max_bytes
        self._states: OrderedDict[str, tuple[SagaState, int]] = OrderedDict()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._states)

    def get(self, saga_id: str) -> SagaState | None:
        held = self._states.get(saga_id)
        return held[0] if held is not None else None

    def put_all(self, states: Mapping[str, SagaState], sizes: Mapping[str, int]) -> None:
        """Cache ``states`` just committed, ``sizes`` their stored bytes; evict the least
        recently committed past either bound."""
        for saga_id, state in states.items():
            old = self._states.pop(saga_id, None)
            if old is not None:
                self.bytes -= old[1]
            size = sizes.get(saga_id, 0)
            self._states[saga_id] = (state, size)
            self.bytes += size
        while self._states and (len(self._states) > self.max_count
                                or self.bytes > self.max_bytes):
            _, (_, size) = self._states.popitem(last=False)
            self.bytes -= size

    def clear(self) -> None:
        self._states.clear()
        self.bytes = 0
