"""Sagas and dead letters written straight into a visibility index through its own
``apply``, as the server's feed writes them, without Kafka: how the server tests get an
index of any size in seconds."""

from __future__ import annotations

import base64
import copy
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from saga.engine import events as ev
from saga.engine.state import SagaState, apply
from saga.store.visibility import SagaChange, VisibilityIndex

BASE_MS = 1_780_000_000_000


def saga(saga_id: str, *events: ev.Event, at_ms: int = BASE_MS, saga_type: str = "order",
         saga_input: Any = None) -> SagaChange:
    """A new saga: its start, then ``events``, each a millisecond after the last."""
    state = SagaState(saga_id)
    entries = []
    for n, event in enumerate((ev.SagaStarted(saga_type, 1, saga_input), *events)):
        entry = ev.Entry(saga_id, n, at_ms + n, event)
        state = apply(state, entry)
        entries.append(entry)
    return SagaChange(None, state, entries)


def add(index: VisibilityIndex, *changes: SagaChange) -> None:
    index.apply(list(changes), [], {}, {})


def letter(partition: int, offset: int, value: bytes, reason: str = "undecodable"
           ) -> dict[str, Any]:
    """A dead letter as the feed stores it (saga.kafka.dead_letters.to_json)."""
    return {"id": f"{partition}:{offset}", "partition": partition, "offset": offset,
            "key": f"k-{offset}", "reason": reason, "detail": "not a record",
            "component": "coordinator", "source": f"saga.inbox/0/{offset}",
            "source_topic": "saga.inbox", "at_ms": BASE_MS, "value_bytes": len(value),
            "value_preview": value[:120].decode(errors="replace"), "cut": [],
            "value_b64": base64.b64encode(value).decode(),
            "key_b64": base64.b64encode(f"k-{offset}".encode()).decode()}


def big_index(path: Path, sagas: int, letters: int, letter_bytes: int,
              source: str | None = None) -> None:
    """An index of ``sagas`` orders (of every kind a dashboard shows: running, waiting
    on a timer, some overdue, completed and failed ones with durations) and ``letters``
    dead letters of ``letter_bytes`` each; stamped with ``source`` (the cluster and
    journal a real server checks it against) when given."""
    index = VisibilityIndex(path)
    try:
        batch: list[SagaChange] = []
        for change in _orders(sagas):
            batch.append(change)
            if len(batch) == 5000:
                add(index, *batch)
                batch = []
        add(index, *batch)
        filler = (b"\x00\x01not a saga input " * (letter_bytes // 18 + 1))[:letter_bytes]
        for n in range(0, letters, 50):
            index.apply([], [letter(n % 3, n + k, filler) for k in range(min(50, letters - n))],
                        {}, {})
        if source is not None:
            index.store.stamp(source)
    finally:
        index.close()


def _orders(count: int) -> Iterator[SagaChange]:
    """Orders of four kinds: each kind folded once, honestly, then copied with its own
    id, times and timer (a fold per saga took most of the time a million of them need)."""
    done = ev.SagaCompleted({"status": "completed"}, compensated=False)
    kinds = [saga("t", done), saga("t", ev.SagaFailed("boom")),
             saga("t", ev.TimerScheduled("t:0:sleep:0", 0, ev.TimerPurpose.SLEEP, 0))]
    for n in range(count):
        saga_id = f"o-{n:07d}"
        at_ms = BASE_MS + n * 10
        kind = n % 10
        template = kinds[0 if kind < 6 else 1 if kind == 6 else 2]
        events = [e.event for e in template.entries]
        timers = {}
        if kind >= 7:  # waiting on a timer; one in three due already (overdue)
            timer = template.after.timers["t:0:sleep:0"]
            timer_id = f"{saga_id}:0:sleep:0"
            due = at_ms - 1 if kind == 7 else at_ms + 86_400_000
            timers = {timer_id: replace(timer, timer_id=timer_id, due_ms=due)}
            events[-1] = ev.TimerScheduled(timer_id, 0, ev.TimerPurpose.SLEEP, due)
        last = at_ms + len(events) - 1
        state = copy.copy(template.after)  # frozen: dataclasses.replace would re-run
        for name, value in (("saga_id", saga_id), ("started_at_ms", at_ms),  # __init__
                            ("run_started_at_ms", at_ms), ("updated_at_ms", last),
                            ("ended_at_ms", last if template.after.ended_at_ms else 0),
                            ("timers", timers or template.after.timers)):
            object.__setattr__(state, name, value)
        yield SagaChange(None, state, [ev.Entry(saga_id, seq, at_ms + seq, event)
                                       for seq, event in enumerate(events)])
