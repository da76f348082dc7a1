"""Services in a test: the ``Service`` objects a team deploys, answered through the
service runner's own code (saga/service/answer.py: a step's stored reply, or the
handler with its staged writes) over an in-memory store, and mocks per command.

A mock is a list of replies, one per command it receives (the last one repeats), or a
function of the command. ``Reply.ok``, ``Reply.business_error`` and
``Reply.technical_error`` answer as a handler that returned, raised ``BusinessError``,
or raised anything else would; ``after=`` makes the answer take that long in virtual
time; ``Reply.never()`` is a command that is never answered (a service that is down).
"""

from __future__ import annotations

import inspect
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from saga.engine.inputs import ReplyOutcome
from saga.errors import BusinessError, SimulatedFailure
from saga.service.handlers import Command, Service
from saga.service.state import ServiceState
from saga.store.service_store import StateChange, StepReply, VersionClock


@dataclass(frozen=True)
class Reply:
    """How a mocked command is answered. ``outcome`` None: never."""

    outcome: ReplyOutcome | None
    result: Any = None
    #: a business error's reason, or a technical failure's message
    error: str = ""
    detail: str = ""
    #: how long the service takes to answer (virtual time)
    after: timedelta = timedelta(0)

    @classmethod
    def ok(cls, result: Any = None, *, after: timedelta = timedelta(0)) -> Reply:
        return cls(ReplyOutcome.OK, result, after=after)

    @classmethod
    def business_error(cls, reason: str, detail: str = "", *,
                       after: timedelta = timedelta(0)) -> Reply:
        """A failure the saga must not retry (the step raises ``StepFailed(reason)``)."""
        return cls(ReplyOutcome.BUSINESS_ERROR, error=reason, detail=detail, after=after)

    @classmethod
    def technical_error(cls, message: str = "simulated technical failure", *,
                        after: timedelta = timedelta(0)) -> Reply:
        """A failure the saga retries per the step's RetryPolicy."""
        return cls(ReplyOutcome.TECHNICAL_ERROR, error=message, after=after)

    @classmethod
    def never(cls) -> Reply:
        """No answer at all: the step's reply deadline (``timeout=``, default
        SAGA_STEP_TIMEOUT_S) passes, and the saga retries."""
        return cls(None)


#: A mock as a function: of the command, returning the result (or a Reply), raising
#: BusinessError or anything else; sync or async.
MockFunction = Callable[[Command], Any]


class MemoryStore:
    """A service's state and step replies in memory: what its RocksDB store and its
    ``<service>.state`` changelog hold on Kafka."""

    def __init__(self) -> None:
        self.state = ServiceState()
        self.clock = VersionClock()

    def get(self, key: str) -> Any:
        return self.state.get(key)

    def scan(self, prefix: str) -> Iterator[tuple[str, Any]]:
        return self.state.scan(prefix)

    def step_reply(self, idempotency_key: str) -> StepReply | None:
        return self.state.step_reply(idempotency_key)

    def apply(self, changes: Iterable[StateChange]) -> None:
        for change in changes:
            self.state.fold(change)
            self.clock.observe(change.version)


class MockHandler:
    """One mocked command's handler: hands out its replies in turn."""

    def __init__(self, double: ServiceDouble, replies: tuple[Reply | MockFunction, ...]
                 ) -> None:
        self.double = double
        self._replies = replies
        self.calls = 0

    async def __call__(self, cmd: Command) -> Any:
        chosen = self._replies[min(self.calls, len(self._replies) - 1)]
        self.calls += 1
        if isinstance(chosen, Reply):
            return self._answer(chosen)
        produced = chosen(cmd)
        if inspect.isawaitable(produced):
            produced = await produced
        return self._answer(produced) if isinstance(produced, Reply) else produced

    def _answer(self, reply: Reply) -> Any:
        self.double.verdict = reply
        if reply.outcome is ReplyOutcome.BUSINESS_ERROR:
            raise BusinessError(reply.error, reply.detail)
        if reply.outcome is ReplyOutcome.TECHNICAL_ERROR:
            raise SimulatedFailure(reply.error)
        return reply.result


@dataclass
class ServiceDouble:
    """A service as a test runs it: its handlers (the real ones, with mocks laid over
    them), its in-memory store, and the commands waiting behind a slow answer."""

    name: str
    service: Service
    real: bool  # a registered Service: a command with no handler is answered as on Kafka
    store: MemoryStore = field(default_factory=MemoryStore)
    #: how the handler now running said to answer (set by a mock), if it said
    verdict: Reply | None = None
    #: per saga, whether a slow answer holds the service: a saga's commands are one
    #: command partition's, handled in order
    busy: set[str] = field(default_factory=set)
    waiting: dict[str, deque[Any]] = field(default_factory=dict)
    mocks: dict[str, MockHandler] = field(default_factory=dict)

    @classmethod
    def of(cls, service: Service) -> ServiceDouble:
        own = Service(service.name)
        own.handlers.update(service.handlers)  # a copy: mocks are laid over it
        own.defaults = service.defaults  # the same: what a test sets later counts
        return cls(service.name, own, real=True)

    def mock(self, command: str, handler: MockHandler) -> None:
        handler.double = self
        self.mocks[command] = handler
        self.service.handlers[command] = handler

    def answers(self, command: str) -> bool:
        return self.real or command in self.service.handlers
