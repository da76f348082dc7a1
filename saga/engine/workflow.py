"""Declaring workflows: ``@workflow(name, version)``, retry policies and durations."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from saga.errors import WorkflowDefinitionError

WorkflowFn = Callable[..., Coroutine[Any, Any, Any]]


def seconds(value: float) -> timedelta:
    return timedelta(seconds=value)


def minutes(value: float) -> timedelta:
    return timedelta(minutes=value)


def hours(value: float) -> timedelta:
    return timedelta(hours=value)


def due_ms(now_ms: int, delay: timedelta) -> int:
    """The absolute due time, in epoch milliseconds, of a wait of ``delay`` from now."""
    return now_ms + max(0, int(delay.total_seconds() * 1000))


@dataclass(frozen=True)
class RetryPolicy:
    """How a failed step is retried.

    A technical failure (the handler raised anything but BusinessError, or the step timed
    out) is retried up to ``max_attempts`` in all, waiting ``initial_interval`` and then
    ``backoff`` times longer each time, never more than ``max_interval``. A reason named
    in ``non_retryable`` fails the step at once, like a BusinessError.
    """

    max_attempts: int = 3
    initial_interval: timedelta = field(default_factory=lambda: timedelta(seconds=1))
    backoff: float = 2.0
    max_interval: timedelta = field(default_factory=lambda: timedelta(seconds=60))
    non_retryable: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise WorkflowDefinitionError("RetryPolicy.max_attempts must be at least 1")
        if self.backoff < 1.0:
            raise WorkflowDefinitionError("RetryPolicy.backoff must be at least 1.0")

    def delay_before(self, attempt: int) -> timedelta:
        """The wait before ``attempt`` (2 is the first retry)."""
        factor = self.backoff ** max(0, attempt - 2)
        return min(self.initial_interval * factor, self.max_interval)


DEFAULT_RETRY = RetryPolicy()
#: Compensations are retried until they succeed: the attempts never run out, the wait
#: between them doubles from 1 s up to a minute.
COMPENSATION_RETRY = RetryPolicy(max_attempts=2**31 - 1, initial_interval=timedelta(seconds=1),
                                 backoff=2.0, max_interval=timedelta(seconds=60))


@dataclass(frozen=True)
class WorkflowDefinition:
    name: str
    version: int
    fn: WorkflowFn
    compensation_retry: RetryPolicy = COMPENSATION_RETRY


class WorkflowRegistry:
    """The workflows a coordinator can run, by name and version."""

    def __init__(self, definitions: Iterable[WorkflowDefinition] = ()) -> None:
        self._by_key: dict[tuple[str, int], WorkflowDefinition] = {}
        for definition in definitions:
            self.add(definition)

    def add(self, definition: WorkflowDefinition) -> None:
        key = (definition.name, definition.version)
        existing = self._by_key.get(key)
        if existing is not None and existing.fn is not definition.fn:
            raise WorkflowDefinitionError(
                f"workflow {definition.name!r} version {definition.version} is registered "
                "twice", hint="give the new code a new version number")
        self._by_key[key] = definition

    def latest(self, name: str) -> WorkflowDefinition | None:
        versions = [d for (n, _), d in self._by_key.items() if n == name]
        return max(versions, key=lambda d: d.version) if versions else None

    def get(self, name: str, version: int) -> WorkflowDefinition | None:
        return self._by_key.get((name, version))

    def names(self) -> list[str]:
        return sorted({name for name, _ in self._by_key})

    def definitions(self) -> list[WorkflowDefinition]:
        """Every registered definition, by name and version."""
        return [self._by_key[key] for key in sorted(self._by_key)]

    def include(self, other: WorkflowRegistry) -> WorkflowRegistry:
        """Add every definition of ``other`` (the built-in workflows); this registry."""
        for definition in other._by_key.values():
            self.add(definition)
        return self


#: Workflows declared with @workflow land here; the coordinator imports modules to fill it.
default_registry = WorkflowRegistry()


def workflow(name: str, version: int = 1, *, registry: WorkflowRegistry | None = None,
             compensation_retry: RetryPolicy = COMPENSATION_RETRY,
             ) -> Callable[[WorkflowFn], WorkflowFn]:
    """Declare ``async def fn(ctx, input)`` as the workflow ``name`` at ``version``.

    ``compensation_retry`` paces the retries of a failing compensation (its
    ``max_attempts`` is ignored: compensations are retried until they succeed).
    """

    def register(fn: WorkflowFn) -> WorkflowFn:
        if not inspect.iscoroutinefunction(fn):
            raise WorkflowDefinitionError(f"workflow {name!r} must be an async function")
        (registry or default_registry).add(
            WorkflowDefinition(name, version, fn, compensation_retry))
        fn.__saga_workflow__ = (name, version)  # type: ignore[attr-defined]
        return fn

    return register
