"""Deterministic ids: the same decision always yields the same id. The only place that
builds or parses them.

Commands: ``<saga id>:<step>:<attempt>`` for an action, ``<saga id>:<step>c:<attempt>``
for the compensation of the action at ``step``. Services deduplicate on it, so a command
that reaches them twice has its side effect once; its idempotency key (the id without
the attempt) is the same for every attempt of the step.

Timers: ``<saga id>:<step>[c]:<purpose>:<attempt>``, one per timer a decision needs.
"""

from __future__ import annotations

from dataclasses import dataclass

from saga.engine.events import CommandKind, TimerPurpose

#: Longest saga id, in bytes of UTF-8. A saga id is the key of every record of its saga
#: and starts every command, timer and idempotency id it makes, so it must stay far
#: below Kafka's record limit; the HTTP API's 512 characters always fit. A longer id
#: is refused where it enters (the client, the coordinator's router, a service) and a
#: child id past it fails the ctx.child() step.
MAX_SAGA_ID_BYTES = 2048


def saga_id_too_long(saga_id: str) -> bool:
    # 4 bytes a character at most: most ids are decided without encoding them.
    return len(saga_id) * 4 > MAX_SAGA_ID_BYTES and \
        len(saga_id.encode(errors="surrogatepass")) > MAX_SAGA_ID_BYTES


@dataclass(frozen=True)
class CommandRef:
    saga_id: str
    step: int
    kind: CommandKind
    attempt: int


@dataclass(frozen=True)
class TimerRef:
    saga_id: str
    step: int
    compensation: bool
    purpose: str
    attempt: int


def command_id(saga_id: str, step: int, kind: CommandKind, attempt: int) -> str:
    suffix = "c" if kind is CommandKind.COMPENSATION else ""
    return f"{saga_id}:{step}{suffix}:{attempt}"


def parse_command_id(value: str) -> CommandRef | None:
    """The parts of a command id, or None when it is not one of ours."""
    parts = value.rsplit(":", 2)
    if len(parts) != 3:
        return None
    saga_id, step, attempt = parts
    kind = CommandKind.COMPENSATION if step.endswith("c") else CommandKind.ACTION
    step = step.removesuffix("c")
    if not (step.isdigit() and attempt.isdigit()) or not saga_id:
        return None
    return CommandRef(saga_id, int(step), kind, int(attempt))


def child_id(saga_id: str, step: int) -> str:
    """The id of the child a saga starts at ``step`` when the workflow names none."""
    return f"{saga_id}.{step}"


def idempotency_key(command_id: str) -> str:
    """The same for every attempt of one step (or of its compensation):
    ``<saga id>:<step>`` or ``<saga id>:<step>c``. What a service passes to the systems it
    calls so that a retried attempt has its effect once; the command id itself without
    its attempt."""
    return command_id.rsplit(":", 1)[0]


def timer_id(saga_id: str, step: int, purpose: TimerPurpose, attempt: int = 0, *,
             compensation: bool = False) -> str:
    return f"{saga_id}:{step}{'c' if compensation else ''}:{purpose.value}:{attempt}"


def parse_timer_id(value: str) -> TimerRef | None:
    """The parts of a timer id, or None when it is not one of ours."""
    parts = value.rsplit(":", 3)
    if len(parts) != 4:
        return None
    saga_id, step, purpose, attempt = parts
    compensation = step.endswith("c")
    step = step.removesuffix("c")
    if not (step.isdigit() and attempt.isdigit()) or not saga_id:
        return None
    return TimerRef(saga_id, int(step), compensation, purpose, int(attempt))
