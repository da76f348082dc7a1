"""Checking stored histories against the current code: `saga verify-replay` and the
replay helpers of saga.testing share everything here.

A history is read from what a cluster exports: the rows `saga history ID --json`
prints (``seq``, ``at_ms``, ``type`` and the event's fields; the saga's current run),
or journal records dumped one per line by `saga verify-replay --dump FILE`
(``saga_id``, ``seq``, ``at_ms``, ``type`` and the event as ``body``; every run).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from saga.engine import events as ev
from saga.engine.executor import Diverged, Execution, Foreign, Returned
from saga.engine.lifecycle import SagaStatus
from saga.engine.recorder import Recorder
from saga.engine.state import SagaState, apply
from saga.engine.workflow import WorkflowRegistry
from saga.errors import CodecError, HistoryError, IllegalTransition, NonDeterminismError

#: The keys of a history row that are the entry's, not its event's.
_ENTRY_KEYS = ("saga_id", "seq", "at_ms", "type")


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


@dataclass(frozen=True)
class DivergentSaga:
    """A saga whose history the code would not replay, and where it parts."""

    saga_id: str
    saga_type: str
    status: SagaStatus | None
    divergence: str

    def to_json(self) -> dict[str, Any]:
        return {"saga_id": self.saga_id, "type": self.saga_type,
                "status": self.status.value if self.status else None,
                "divergence": self.divergence}

    def __str__(self) -> str:
        status = self.status.value if self.status else None
        return f"{self.saga_id} ({self.saga_type}, {status}): {self.divergence}"


@dataclass(frozen=True)
class ReplayReport:
    checked: int
    diverging: tuple[DivergentSaga, ...]

    @property
    def ok(self) -> bool:
        return not self.diverging

    def to_json(self) -> dict[str, Any]:
        """What `saga verify-replay --json` prints."""
        return {"checked": self.checked, "diverging": [d.to_json() for d in self.diverging]}

    def __str__(self) -> str:
        return "\n".join([*map(str, self.diverging), f"{self.checked} histories replayed, "
                                                      f"{len(self.diverging)} would diverge"])


def verify_replay(registry: WorkflowRegistry, states: Iterable[SagaState]) -> ReplayReport:
    """Replay every saga of ``states`` with the code of ``registry``, each with the
    version it started with; which would diverge, in saga id order."""
    checked = 0
    diverging: list[DivergentSaga] = []
    for state in sorted(states, key=lambda s: s.saga_id):
        checked += 1
        try:
            check_replay(registry, state)
        except NonDeterminismError as exc:
            diverging.append(DivergentSaga(state.saga_id, state.saga_type, state.status,
                                           exc.message))
    return ReplayReport(checked, tuple(diverging))


# ---- recorded histories --------------------------------------------------------------
def journal_line(entry: ev.Entry) -> bytes:
    """One journal record as a line of a dump (`saga verify-replay --dump`)."""
    return orjson.dumps({"saga_id": entry.saga_id, "seq": entry.seq, "at_ms": entry.at_ms,
                         "type": entry.event.type_name, "body": entry.event})


def entry_of(row: Mapping[str, Any], saga_id: str | None = None) -> ev.Entry:
    """An entry from a history row or a dumped journal record; ``saga_id`` for a row,
    which does not name its saga."""
    try:
        owner = row.get("saga_id") or saga_id
        if not owner:
            raise HistoryError(f"entry {row.get('seq')!r} does not name its saga",
                               hint="pass the saga id (a `saga history ID --json` row does "
                               "not carry it)")
        body = row["body"] if isinstance(row.get("body"), dict) else {
            k: v for k, v in row.items() if k not in _ENTRY_KEYS}
        return ev.Entry(str(owner), int(row["seq"]), int(row["at_ms"]),
                        ev.from_body(str(row["type"]), body))
    except (KeyError, TypeError, ValueError, CodecError) as exc:
        raise HistoryError(f"a history entry cannot be read ({type(exc).__name__}: {exc}): "
                           f"{dict(row)!r:.200}") from exc


def read_dump(lines: Iterable[bytes | str]) -> dict[str, list[ev.Entry]]:
    """The entries of a journal dump (one JSON record per line), by saga, in order."""
    histories: dict[str, list[ev.Entry]] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise HistoryError(f"line {number} of the journal dump is not JSON: {exc}") from exc
        if not isinstance(row, dict):
            raise HistoryError(f"line {number} of the journal dump is not a JSON object")
        entry = entry_of(row)
        histories.setdefault(entry.saga_id, []).append(entry)
    for entries in histories.values():
        entries.sort(key=lambda e: e.seq)
    return histories


def fold_history(saga_id: str, entries: Iterable[ev.Entry], *, saga_type: str = ""
                 ) -> SagaState:
    """The state of a saga from its history: from its first entry, or from the
    ``SagaContinued`` its current run begins with (what `saga history` shows of a saga
    that continued as new), which does not name the saga's type: ``saga_type`` then."""
    held = list(entries)
    if not held:
        raise HistoryError(f"the history of saga {saga_id} is empty")
    first = held[0]
    if first.seq == 0:
        state = SagaState(saga_id)
    elif isinstance(first.event, ev.SagaContinued):
        if not saga_type:
            raise HistoryError(f"the history of saga {saga_id} begins with run "
                               f"{first.event.run} (it continued as new), which does not "
                               "name the saga's type",
                               hint="pass its type (`saga status ID` shows it)")
        state = SagaState(saga_id, saga_type=saga_type, status=SagaStatus.RUNNING,
                          seq=first.seq)
    else:
        raise HistoryError(f"the history of saga {saga_id} begins at entry {first.seq}, "
                           "neither its start nor the start of a run",
                           hint="export the whole history")
    try:
        return _fold_on(state, held)
    except (ValueError, KeyError, IllegalTransition) as exc:  # a gap, an impossible history
        raise HistoryError(f"the history of saga {saga_id} does not fold: {exc}") from exc


def _fold_on(state: SagaState, entries: list[ev.Entry]) -> SagaState:
    for entry in entries:
        state = apply(state, entry)
    return state

