"""The inbox partitions one coordinator owns, and where it has read each to.

Every transaction commits the positions of all owned partitions, not only of those its
batch read: a transaction sends offsets for the partitions it names, and a partition
left out keeps an older committed offset that a new owner would read from again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping


class Ownership:
    def __init__(self) -> None:
        self.owned: set[int] = set()
        #: Per owned partition, the next offset to read, as committed.
        self.positions: dict[int, int] = {}
        #: Set on every rebalance: a scrape right after one sees every owned partition
        #: and none that moved away.
        self.changed = False

    def assigned(self, committed: Iterable[tuple[int, int]], partitions: Iterable[int]
                 ) -> None:
        """``committed``: (partition, offset) the group holds; negative when none."""
        for partition, offset in committed:
            if offset >= 0:
                self.positions[partition] = offset
        self.owned.update(partitions)
        self.changed = True

    def revoked(self, partitions: Iterable[int]) -> None:
        for partition in partitions:
            self.owned.discard(partition)
            self.positions.pop(partition, None)
        self.changed = True

    def to_commit(self, consumed: Mapping[int, int]) -> dict[int, int]:
        """What a transaction that read up to ``consumed`` commits."""
        offsets = {p: o for p, o in self.positions.items() if p in self.owned}
        offsets.update(consumed)
        return offsets

    def committed(self, consumed: Mapping[int, int]) -> None:
        self.positions.update(consumed)
