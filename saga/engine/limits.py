"""The decider a process runs, with the limits its Settings give: the coordinator's and
saga.testing's are both built here, so a test decides under the same run budget and
default step timeout as production."""

from __future__ import annotations

from datetime import timedelta

from saga.config import Settings
from saga.engine.budget import RunBudget
from saga.engine.decider import Decider
from saga.engine.workflow import WorkflowRegistry


def budget_of(settings: Settings) -> RunBudget:
    return RunBudget(max_events=settings.run_max_events,
                     max_commands=settings.run_max_commands,
                     max_history=settings.max_history,
                     max_seconds=settings.run_max_seconds,
                     max_value_bytes=settings.max_payload_bytes,
                     max_pending_signals=settings.max_pending_signals)


def step_timeout_of(settings: Settings) -> timedelta | None:
    """The reply deadline of a call that names none (SAGA_STEP_TIMEOUT_S; 0: none)."""
    return timedelta(seconds=settings.step_timeout_s) if settings.step_timeout_s > 0 else None


def decider_for(settings: Settings, registry: WorkflowRegistry, *, cache_size: int
                ) -> Decider:
    return Decider(registry, cache_size=cache_size, budget=budget_of(settings),
                   step_timeout=step_timeout_of(settings))
