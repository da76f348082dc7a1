"""What the console's overview charts: per ten seconds of the last minutes, sagas started
and ended, and the step latency (issue to reply) of the steps answered then. Kept in
memory by the server from the entries its feed indexes; entries older than the window
(a catch-up after a restart) fall outside it.

Bounded whatever the journal holds: one bucket per ten seconds of the window and no
more (an entry stamped in the future, by a skewed clock or a hostile writer, is not
kept), and each bucket's latencies as counts per logarithmic bucket (the same 2 %
buckets as the index's durations), not one number per step answered.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from saga.engine import events as ev
from saga.engine.state import SagaState
from saga.store.visibility import duration_bucket, percentiles

BUCKET_MS = 10_000
_ENDINGS = (ev.SagaCompleted, ev.SagaFailed, ev.SagaCancelled)


@dataclass
class _Bucket:
    started: int = 0
    ended: int = 0
    steps: dict[int, int] = field(default_factory=dict)  # latency bucket -> steps
    slowest: int = 0


class RecentActivity:
    def __init__(self, minutes: int = 15) -> None:
        self._span = minutes * 60_000
        self._buckets: dict[int, _Bucket] = {}
        self._lock = threading.Lock()

    def observe(self, entry: ev.Entry, state: SagaState) -> None:
        """``entry`` just folded into ``state``."""
        event = entry.event
        if not isinstance(event, (ev.SagaStarted, *_ENDINGS, ev.CommandCompleted,
                                  ev.CommandFailed, ev.CommandTimedOut)):
            return
        now = int(time.time() * 1000)
        if not now - self._span <= entry.at_ms <= now + BUCKET_MS:
            return
        slot = entry.at_ms - entry.at_ms % BUCKET_MS
        with self._lock:
            bucket = self._buckets.setdefault(slot, _Bucket())
            if isinstance(event, ev.SagaStarted):
                bucket.started += 1
            elif isinstance(event, _ENDINGS):
                bucket.ended += 1
            else:
                issued = (state.steps.get(event.step) if event.kind is ev.CommandKind.ACTION
                          else state.compensations.get(event.step))
                if issued is not None and issued.issued_at_ms:
                    took = max(0, entry.at_ms - issued.issued_at_ms)
                    at = duration_bucket(took)
                    bucket.steps[at] = bucket.steps.get(at, 0) + 1
                    bucket.slowest = max(bucket.slowest, took)
            for old in [s for s in self._buckets if s < now - self._span]:
                del self._buckets[old]

    def series(self) -> list[dict[str, Any]]:
        """One row per bucket of the window, oldest first, empty ones included."""
        now = int(time.time() * 1000)
        first = (now - self._span) - (now - self._span) % BUCKET_MS
        with self._lock:
            held = {slot: (b.started, b.ended, dict(b.steps), b.slowest)
                    for slot, b in self._buckets.items()}
        rows = []
        for slot in range(first, now + 1, BUCKET_MS):
            started, ended, steps, slowest = held.get(slot, (0, 0, {}, 0))
            shown = percentiles(steps, slowest)
            rows.append({"at_ms": slot, "started": started, "ended": ended,
                         "steps": shown["count"],
                         "step_p50_ms": shown["p50"] if shown["count"] else None,
                         "step_p99_ms": shown["p99"] if shown["count"] else None})
        return rows
