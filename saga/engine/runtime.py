"""What the workflow API (``SagaContext`` and its awaitables) needs from whatever runs
the workflow: the executor implements it, replaying or live. The context knows nothing
else, the way Temporal's workflow module talks only to its ``_Runtime``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any, Literal, Protocol, TypeVar

from saga.engine.events import TimerPurpose
from saga.engine.recorder import Emitter
from saga.engine.workflow import RetryPolicy

T = TypeVar("T")

#: What a step of the workflow is; a replay that finds another kind has diverged.
StepKind = Literal["call", "value", "wait", "sleep", "compensate", "child", "attributes"]
#: An update's handler (payload -> the value the caller gets) and its validator (raises
#: to refuse the update before anything is journaled).
UpdateHandler = Callable[[Any], Any]
UpdateValidator = Callable[[Any], None]


class WorkflowRuntime(Emitter, Protocol):
    @property
    def compensation_retry(self) -> RetryPolicy: ...

    @property
    def step_timeout(self) -> timedelta | None:
        """The reply deadline of a call or compensation that names none (None: none)."""
        ...

    def take_step(self, kind: StepKind, label: str) -> int:
        """The next step number; raises Divergence when the journal holds another kind."""
        ...

    def check_value(self, what: str, value: Any) -> None:
        """Raise UnencodableValue when ``value`` is not JSON or too big to journal."""
        ...

    def record_value(self, what: str, produce: Callable[[], T]) -> T:
        """``produce()`` recorded in the journal, or the value recorded before."""
        ...

    def issue_call(self, step: int, service: str, name: str, input: Any,
                   compensate: tuple[str, str] | None, attempt: int,
                   timeout: timedelta | None) -> None: ...

    def schedule(self, timer: str, step: int, purpose: TimerPurpose, delay: timedelta
                 ) -> None: ...

    def start_child(self, step: int, saga_type: str, input: Any, child_id: str) -> None: ...

    def patched(self, name: str) -> bool:
        """True where the saga takes the new branch: it reached this point with this code
        (or did before, and recorded it); False where its history passed it without."""
        ...

    def record_attributes(self, attributes: dict[str, Any]) -> None: ...

    @property
    def replaying_at(self) -> int | None:
        """While the code replays its history: the seq its next step was recorded at. A
        question the code asks about the saga now (has that child ended?) must get the
        answer it got then, from the entries before that seq. None on new ground."""
        ...

    def register_update(self, name: str, handler: UpdateHandler,
                        validator: UpdateValidator | None) -> None: ...
