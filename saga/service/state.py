"""Views of a service's state: one batch's pending writes over the local store (what
handlers read while a transaction is being built), and the state folded from the
changelog topic (what reports read, from any machine)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from saga.store.service_store import DATA, STEP, ServiceStore, StateChange, StepReply


class BatchState:
    """The local store plus the changes of the batch being built, newest last. The
    changes reach Kafka and then the store only if the batch's transaction commits."""

    def __init__(self, store: ServiceStore) -> None:
        self._store = store
        self.changes: dict[str, StateChange] = {}

    def get(self, key: str) -> Any:
        pending = self.changes.get(DATA + key)
        return pending.value if pending is not None else self._store.get(key)

    def scan(self, prefix: str) -> Iterator[tuple[str, Any]]:
        seen = dict(self._store.scan(prefix))
        start = DATA + prefix
        seen.update({k[len(DATA):]: c.value for k, c in self.changes.items()
                     if k.startswith(start)})
        yield from sorted(seen.items())

    def step_reply(self, idempotency_key: str) -> StepReply | None:
        pending = self.changes.get(STEP + idempotency_key)
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

    def step_replies(self) -> dict[str, StepReply]:
        """Per idempotency key, the reply the step got."""
        return {k[len(STEP):]: StepReply(c.value["command_id"], c.value["reply"])
                for k, c in self._latest.items() if k.startswith(STEP)}

    def changes(self) -> list[StateChange]:
        return list(self._latest.values())
