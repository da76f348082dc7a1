"""Views of a service's state: one batch's pending writes over the local store (what
handlers read while a transaction is being built), and the state folded from the
changelog topic (what reports read, from any machine)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

from saga.store.service_store import DATA, STEP, StateChange, StepReply, VersionClock


class StoreView(Protocol):
    """What a batch reads and versions its writes by: the service's local store
    (ServiceStore, RocksDB), or saga.testing's in-memory one."""

    clock: VersionClock

    def get(self, key: str) -> Any: ...

    def scan(self, prefix: str) -> Iterator[tuple[str, Any]]: ...

    def step_reply(self, idempotency_key: str) -> StepReply | None: ...


class RoundWrites:
    """The changes staged by the partition batches of one consume round that have not
    committed yet, by key: what a later batch of the round reads instead of the store.
    A batch that reads one depends on the batch that staged it, and commits only after
    it (and not at all if it fails), so the batches of a round can commit side by side
    without one ever keeping a value derived from another's aborted write."""

    def __init__(self) -> None:
        self._latest: dict[str, tuple[int, StateChange]] = {}

    def stage(self, partition: int, changes: dict[str, StateChange]) -> None:
        for key, change in changes.items():
            self._latest[key] = (partition, change)

    def get(self, key: str) -> tuple[int, StateChange] | None:
        return self._latest.get(key)

    def under(self, start: str) -> Iterator[tuple[str, int, StateChange]]:
        for key, (partition, change) in self._latest.items():
            if key.startswith(start):
                yield key, partition, change


class BatchState:
    """The local store plus the changes of the batch being built, newest last. The
    changes reach Kafka and then the store only if the batch's transaction commits.
    ``round`` holds what the round's earlier batches staged; ``depends_on`` collects
    the partitions whose staged changes this batch read."""

    def __init__(self, store: StoreView, round: RoundWrites | None = None,
                 partition: int = -1) -> None:
        self._store = store
        self._round = round
        self._partition = partition
        self.changes: dict[str, StateChange] = {}
        self.depends_on: set[int] = set()

    def _pending(self, key: str) -> StateChange | None:
        own = self.changes.get(key)
        if own is not None or self._round is None:
            return own
        staged = self._round.get(key)
        if staged is None:
            return None
        if staged[0] != self._partition:
            self.depends_on.add(staged[0])
        return staged[1]

    def get(self, key: str) -> Any:
        pending = self._pending(DATA + key)
        return pending.value if pending is not None else self._store.get(key)

    def scan(self, prefix: str) -> Iterator[tuple[str, Any]]:
        seen = dict(self._store.scan(prefix))
        start = DATA + prefix
        if self._round is not None:
            for key, partition, change in self._round.under(start):
                seen[key[len(DATA):]] = change.value
                if partition != self._partition:
                    self.depends_on.add(partition)
        seen.update({k[len(DATA):]: c.value for k, c in self.changes.items()
                     if k.startswith(start)})
        yield from sorted(seen.items())

    def step_reply(self, idempotency_key: str) -> StepReply | None:
        pending = self._pending(STEP + idempotency_key)
        if pending is not None:
            return StepReply(pending.value["command_id"], pending.value["reply"])
        return self._store.step_reply(idempotency_key)

    def record(self, command_id: str, idempotency_key: str, writes: dict[str, Any],
               reply: dict[str, Any]) -> None:
        """A handled command: the handler's writes and the step's reply."""
        clock = self._store.clock
        for key, value in writes.items():
            self.changes[DATA + key] = StateChange(DATA + key, clock.next(), value,
                                                   command_id)
        self.changes[STEP + idempotency_key] = StateChange(
            STEP + idempotency_key, clock.next(), {"command_id": command_id, "reply": reply},
            command_id)


class ServiceState:
    """A service's state as its changelog holds it: per key, the highest version."""

    def __init__(self) -> None:
        self._latest: dict[str, StateChange] = {}

    def fold(self, change: StateChange) -> None:
        held = self._latest.get(change.key)
        if held is None or held.version < change.version:
            self._latest[change.key] = change

    def get(self, key: str) -> Any:
        held = self._latest.get(DATA + key)
        return None if held is None else held.value

    def scan(self, prefix: str) -> Iterator[tuple[str, Any]]:
        start = DATA + prefix
        yield from sorted((k[len(DATA):], c.value) for k, c in self._latest.items()
                          if k.startswith(start))

    def step_reply(self, idempotency_key: str) -> StepReply | None:
        held = self._latest.get(STEP + idempotency_key)
        return None if held is None else StepReply(held.value["command_id"],
                                                   held.value["reply"])

    def step_replies(self) -> dict[str, StepReply]:
        """Per idempotency key, the reply the step got."""
        return {k[len(STEP):]: StepReply(c.value["command_id"], c.value["reply"])
                for k, c in self._latest.items() if k.startswith(STEP)}

    def changes(self) -> list[StateChange]:
        return list(self._latest.values())
