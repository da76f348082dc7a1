"""Checking stored histories against the current code (`saga verify-replay`)."""

from __future__ import annotations

import orjson

from saga.engine.executor import Diverged, Execution, Foreign, Returned
from saga.engine.lifecycle import SagaStatus
from saga.engine.recorder import Recorder
from saga.engine.state import SagaState
from saga.engine.workflow import WorkflowRegistry
from saga.errors import NonDeterminismError


def check_replay(registry: WorkflowRegistry, state: SagaState) -> None:
    """Raise NonDeterminismError when the current code cannot replay ``state``."""
    if not state.exists:
        return
    definition = registry.get(state.saga_type, state.version)
    if definition is None:
        raise NonDeterminismError(f"workflow {state.saga_type!r} version {state.version} is "
                                  "not registered")
    if state.cancel_reason:
        return  # the workflow stopped at the cancel; only compensations ran after it
    execution = Execution(definition, state.input, first_step=state.run_first_step)
    outcome = execution.activate(Recorder(state, state.updated_at_ms))
    execution.close()
    match outcome:
        case Diverged(detail=detail) | Foreign(detail=detail):
            raise NonDeterminismError(detail)
        case Returned(value=value) if state.status in (SagaStatus.COMPLETED,
                                                      SagaStatus.COMPENSATED):
            if orjson.loads(orjson.dumps(value)) != state.result:
                raise NonDeterminismError(f"the code now returns {value!r}, the journal "
                                          f"recorded {state.result!r}")
