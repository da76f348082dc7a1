"""The coordinator's metrics: what a committed batch did, and the gauges of the
partitions it owns. Counted after the commit only, so an aborted batch that is decided
again is not counted twice."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Mapping
from typing import Any

from confluent_kafka import KafkaException, TopicPartition

from saga.coordinator.outbox import Outbox
from saga.engine import events as ev
from saga.store.timer_index import TimerIndex
from saga.telemetry import metrics as m
from saga.telemetry import tracing

_children: dict[tuple[Any, ...], Any] = {}


def _child(metric: Any, *labels: str) -> Any:
    """A labelled child, looked up once (labels() costs a lock and a dict per call)."""
    key = (metric, *labels)
    found = _children.get(key)
    if found is None:
        found = _children[key] = metric.labels(*labels)
    return found


def committed(outbox: Outbox, batch_s: float, commit_s: float) -> None:
    m.BATCH_DURATION.observe(batch_s)
    m.COMMIT_DURATION.observe(commit_s)
    _child(m.TRANSACTIONS, "committed").inc()
    for kind, count in outbox.inputs.items():
        _child(m.INPUTS, kind).inc(count)
    for outcome, count in outbox.outcomes.items():
        _child(m.DECISIONS, outcome).inc(count)
    for reason in outbox.letter_reasons:
        _child(m.DEAD_LETTERS, reason, "coordinator").inc()
    now_ms = time.time() * 1000
    for due_ms in outbox.fired_due:
        m.TIMERS_FIRED.inc()
        m.TIMER_LATENESS.observe(max(0.0, now_ms - due_ms) / 1000)
    for entry in outbox.entries:
        event = entry.event
        _child(m.JOURNAL_ENTRIES, event.type_name).inc()
        if isinstance(event, ev.CommandIssued):
            _child(m.COMMANDS, event.service, event.name, event.kind).inc()
        elif isinstance(event, ev.CommandCompleted | ev.CommandFailed | ev.CommandTimedOut):
            state = outbox.states.get(entry.saga_id)
            issued = None if state is None else (
                state.steps.get(event.step) if event.kind is ev.CommandKind.ACTION
                else state.compensations.get(event.step))
            if issued is not None and issued.issued_at_ms:
                _child(m.STEP_LATENCY, issued.service, issued.name).observe(
                    max(0, entry.at_ms - issued.issued_at_ms) / 1000)
        elif isinstance(event, ev.SagaParked):
            _child(m.PARKED, event.reason).inc()
    if tracing.enabled():
        _spans(outbox)


def _spans(outbox: Outbox) -> None:
    """The spans that ended in this batch: each answered (or timed-out) step attempt,
    and each saga that ended."""
    for entry in outbox.entries:
        event = entry.event
        state = outbox.states.get(entry.saga_id)
        if state is None:
            continue
        if isinstance(event, ev.CommandCompleted | ev.CommandFailed | ev.CommandTimedOut):
            compensation = event.kind is ev.CommandKind.COMPENSATION
            issued = state.compensations.get(event.step) if compensation \
                else state.steps.get(event.step)
            if issued is None:
                continue
            outcome = "ok" if isinstance(event, ev.CommandCompleted) else \
                "timeout" if isinstance(event, ev.CommandTimedOut) else "failed"
            verb = "saga.compensate" if compensation else "saga.step"
            tracing.record(
                f"{verb} {issued.service}.{issued.name}",
                parent=tracing.saga_context(state.saga_id, state.trace),
                span_id=tracing.step_span_id(event.command_id),
                start_ms=issued.issued_at_ms or entry.at_ms, end_ms=entry.at_ms,
                attributes={"saga.id": state.saga_id, "saga.command_id": event.command_id,
                            "saga.attempt": issued.attempt, "saga.step": event.step,
                            "saga.outcome": outcome},
                error=getattr(event, "reason", None) if outcome == "failed" else
                ("no reply in time" if outcome == "timeout" else None))
        elif isinstance(event, ev.SagaCompleted | ev.SagaFailed | ev.SagaCancelled):
            starter = tracing.parse(state.trace) if state.trace else None
            tracing.record(
                f"saga {state.saga_type}", parent=starter,
                span_id=tracing.saga_span_id(state.saga_id),
                trace_id=tracing.saga_trace_id(state.saga_id, state.trace),
                start_ms=state.started_at_ms, end_ms=entry.at_ms,
                attributes={"saga.id": state.saga_id, "saga.type": state.saga_type,
                            "saga.status": state.status.value if state.status else ""},
                error=None if isinstance(event, ev.SagaCompleted) else state.error)


def aborted() -> None:
    _child(m.TRANSACTIONS, "aborted").inc()


def partitions(consumer: Any, inbox: str, owned: Iterable[int], positions: Mapping[int, int],
               index: TimerIndex, was: set[int]) -> set[int]:
    """Refresh the per-partition gauges; forget those of partitions no longer owned.
    The lag uses the loop's own next offsets (the consumer's position is unset until a
    partition yields a record) and the ends the fetches reported; only a partition whose
    ends are not known that way (no fetch answered yet, or no offset of the group's and
    fetches carry no low end) costs a request to the broker, of a second at most, and
    none after one that timed out."""
    now_ms = int(time.time() * 1000)
    mine = set(owned)
    broker_answers = True
    for partition in sorted(mine):
        label = str(partition)
        tp = TopicPartition(inbox, partition)
        low, high = consumer.get_watermark_offsets(tp, cached=True)
        if broker_answers and (high < 0 or (partition not in positions and low < 0)):
            try:
                low, high = consumer.get_watermark_offsets(tp, timeout=1.0, cached=False)
            except KafkaException:
                # The broker did not answer in time: next round. Not asked again in
                # this one, so an unreachable broker costs the loop one second at most.
                low = high = -1
                broker_answers = False
        # No offset of the group's yet: it reads from the start (auto.offset.reset).
        position = positions.get(partition, low)
        if high >= 0 and position >= 0:
            m.CONSUMER_LAG.labels(label).set(max(0, high - position))
        stats = index.stats(partition, now_ms)
        m.TIMERS_PENDING.labels(label).set(stats.pending)
        m.TIMERS_OVERDUE.labels(label).set(stats.overdue)
    for partition in was - mine:
        for gauge in (m.CONSUMER_LAG, m.TIMERS_PENDING, m.TIMERS_OVERDUE):
            with contextlib.suppress(KeyError):
                gauge.remove(str(partition))
    return mine
