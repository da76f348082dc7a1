"""What a service author writes against: a Service with a handler per command.

    service = Service("payments")

    @service.handler("charge")
    async def charge(cmd: Command) -> dict:
        ...                         # cmd.body is the saga's input for the step
        provider.charge(..., idempotency_key=cmd.idempotency_key)  # once per step
        cmd.state.put("k", value)   # business state, committed with the reply
        raise BusinessError("card_declined")   # a failure the saga sees at once

Any exception other than BusinessError is a technical failure, retried by the saga's
RetryPolicy. The runner (runner.py) answers every attempt of a step that already has
an answer (a redelivery, or a retry after a timeout) from the step's stored reply, so a
handler runs again only after a technical failure; its state writes and the reply are
committed together, in one Kafka transaction with the command's offset.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from saga.config import Settings
from saga.engine.events import CommandKind

Handler = Callable[["Command"], Awaitable[Any]]


class StateView(Protocol):
    """A service's state as a handler or a report reads it."""

    def get(self, key: str) -> Any: ...

    def scan(self, prefix: str) -> Iterator[tuple[str, Any]]: ...


class StagedState:
    """Reads see the state so far and the handler's own writes; writes land only if the
    handler succeeds. A key never written reads as the service's default for it."""

    def __init__(self, state: StateView, defaults: Mapping[str, Any]) -> None:
        self._state = state
        self._defaults = defaults
        self.writes: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        if key in self.writes:
            value = self.writes[key]
        else:
            value = self._state.get(key)
            if value is None:
                value = self._defaults.get(key)
        return default if value is None else value

    def put(self, key: str, value: Any) -> None:
        self.writes[key] = value

    def scan(self, prefix: str) -> Iterator[tuple[str, Any]]:
        seen = {k: v for k, v in self._defaults.items() if k.startswith(prefix)}
        seen.update(self._state.scan(prefix))
        seen.update({k: v for k, v in self.writes.items() if k.startswith(prefix)})
        yield from sorted(seen.items())


@dataclass(frozen=True)
class Command:
    command_id: str
    #: The same for every attempt of this step: pass it to the systems you call.
    idempotency_key: str
    saga_id: str
    saga_type: str
    name: str
    kind: CommandKind
    attempt: int
    body: Any
    state: StagedState = field(repr=False)


class Service:
    def __init__(self, name: str) -> None:
        self.name = name
        self.handlers: dict[str, Handler] = {}
        #: What a key reads as before anything wrote it (inventory's starting stock).
        #: Defaults are not state: they never reach the changelog, so a restarted or
        #: recreated instance that restores its state keeps what handlers wrote.
        self.defaults: dict[str, Any] = {}

    def handler(self, command: str) -> Callable[[Handler], Handler]:
        def register(fn: Handler) -> Handler:
            self.handlers[command] = fn
            return fn

        return register

    async def run(self, settings: Settings, *, instance_id: str | None = None,
                  stop: asyncio.Event | None = None) -> None:
        from saga.service.runner import ServiceRunner

        await ServiceRunner(self, settings, instance_id=instance_id).run(
            stop or asyncio.Event())
