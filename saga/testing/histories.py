"""Recorded histories replayed against the code about to deploy, as pytest helpers; the
replay itself is `saga verify-replay`'s (saga/engine/replay.py).

    histories = load_journal("tests/histories/prod.jsonl")    # saga verify-replay --dump
    assert_replays(histories)                                  # or replay(...).diverging

    order = load_history("tests/histories/o-1.json")          # saga history o-1 --json
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from saga.engine import events as ev
from saga.engine.ids import parse_command_id, parse_timer_id
from saga.engine.replay import ReplayReport, entry_of, fold_history, read_dump, verify_replay
from saga.engine.state import SagaState
from saga.errors import HistoryError
from saga.testing.env import Workflows, registry_of


@dataclass(frozen=True)
class History:
    """One saga's recorded entries; ``saga_type`` for a history that begins with a
    later run (it continued as new), which does not name it."""

    saga_id: str
    entries: tuple[ev.Entry, ...]
    saga_type: str = ""

    def state(self) -> SagaState:
        """The saga's state, folded from its entries."""
        return fold_history(self.saga_id, self.entries, saga_type=self.saga_type)


def load_history(source: str | Path | Sequence[Mapping[str, Any]], *,
                 saga_id: str | None = None, saga_type: str = "") -> History:
    """A history as `saga history ID --json` prints it (or the HTTP API's
    ``/api/sagas/{id}/history``): a file, or the rows. The rows do not name their
    saga: ``saga_id``, else the file's name without its suffix (``o-1.json``)."""
    if isinstance(source, str | Path):
        path = Path(source)
        try:
            rows = orjson.loads(path.read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            raise HistoryError(f"cannot read the history {path}: {exc}") from exc
        saga_id = saga_id or path.stem
    else:
        rows = list(source)
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise HistoryError("a history is a JSON list of entries (`saga history ID --json`)")
    named = saga_id or next((str(r["saga_id"]) for r in rows if r.get("saga_id")), None)
    if not named:
        raise HistoryError("the history does not name its saga", hint="pass saga_id=")
    entries = tuple(entry_of(row, named) for row in rows)
    others = _sagas_named(entries) - {named}
    if others:
        raise HistoryError(f"the history loaded as saga {named!r} holds commands and timers "
                           f"of {', '.join(sorted(others))}",
                           hint="pass the saga's id: load_history(path, saga_id=...)")
    return History(named, entries, saga_type)


def load_journal(source: str | Path | Iterable[bytes | str]) -> list[History]:
    """Every saga's history from a journal dump, one record per line
    (`saga verify-replay --dump FILE`): a file, or its lines."""
    if isinstance(source, str | Path):
        try:
            with Path(source).open("rb") as lines:
                found = read_dump(lines)
        except OSError as exc:
            raise HistoryError(f"cannot read the journal dump {source}: {exc}") from exc
    else:
        found = read_dump(source)
    return [History(saga_id, tuple(entries)) for saga_id, entries in sorted(found.items())]


def replay(histories: History | Iterable[History], workflows: Workflows = None
           ) -> ReplayReport:
    """Replay each history with ``workflows`` (as SagaTestEnv takes them; by default
    every @workflow imported), each with the version it started with: the report of
    `saga verify-replay`."""
    held = [histories] if isinstance(histories, History) else list(histories)
    return verify_replay(registry_of(workflows), [h.state() for h in held])


def assert_replays(histories: History | Iterable[History], workflows: Workflows = None
                   ) -> ReplayReport:
    """``replay``, failing the test (AssertionError) with every saga that would diverge
    and where."""
    report = replay(histories, workflows)
    if not report.ok:
        raise AssertionError(f"the code would not replay these histories:\n{report}")
    return report


def _sagas_named(entries: Iterable[ev.Entry]) -> set[str]:
    """The sagas whose command and timer ids the entries hold."""
    named: set[str] = set()
    for entry in entries:
        event = entry.event
        if isinstance(event, ev.CommandIssued | ev.CommandCompleted | ev.CommandFailed
                      | ev.CommandTimedOut):
            ref = parse_command_id(event.command_id)
            if ref is not None:
                named.add(ref.saga_id)
        elif isinstance(event, ev.TimerScheduled):
            timer = parse_timer_id(event.timer_id)
            if timer is not None:
                named.add(timer.saga_id)
    return named
