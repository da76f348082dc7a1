"""Deterministic command ids: the same decision always yields the same id.

``<saga id>:<step>:<attempt>`` for an action, ``<saga id>:<step>c:<attempt>`` for the
compensation of the action at ``step``. Services deduplicate on it, so a command that
reaches them twice has its side effect once.
"""

from __future__ import annotations

from dataclasses import dataclass

from saga.engine.events import ACTION, COMPENSATION


@dataclass(frozen=True)
class CommandRef:
    saga_id: str
    step: int
    kind: str
    attempt: int


def command_id(saga_id: str, step: int, kind: str, attempt: int) -> str:
    suffix = "c" if kind == COMPENSATION else ""
    return f"{saga_id}:{step}{suffix}:{attempt}"


def parse_command_id(value: str) -> CommandRef | None:
    """The parts of a command id, or None when it is not one of ours."""
    parts = value.rsplit(":", 2)
    if len(parts) != 3:
        return None
    saga_id, step, attempt = parts
    kind = COMPENSATION if step.endswith("c") else ACTION
    step = step.removesuffix("c")
    if not (step.isdigit() and attempt.isdigit()) or not saga_id:
        return None
    return CommandRef(saga_id, int(step), kind, int(attempt))


def timer_id(saga_id: str, step: int, purpose: str, attempt: int = 0, *,
             compensation: bool = False) -> str:
    """``<saga id>:<step>[c]:<purpose>:<attempt>``: one id per timer a decision needs."""
    return f"{saga_id}:{step}{'c' if compensation else ''}:{purpose}:{attempt}"
