"""Timer wheel benchmarks: firing lateness with 10k, 100k and 1M pending timers, the
wheel's memory, and the firing rate when catching up after downtime.

The pending load belongs to sagas that do not exist (a million real sagas would measure
the engine, not the wheel): it is written to saga.timers before the coordinator starts,
which indexes it on assignment. The probes are real sagas sleeping until due times
spread over ten seconds. Their lateness is measured where it matters, when the saga
wakes: the time of the TimerFired entry the coordinator journals minus the timer's due
time. Overdue load fires into saga.inbox and is dead-lettered there as `unknown_saga`,
which is part of the cost; the downtime run times those firings (`sent_at_ms`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from saga.config import Settings
from saga.dev.audit import percentile, read_topic
from saga.dev.stack import Stack
from saga.engine import events as ev
from saga.engine.inputs import FireTimer, StartSaga
from saga.kafka import clients
from saga.kafka.journal import read_journal
from saga.kafka.partitioner import partition_of
from saga.kafka.records import RecordCodec


def load_timers(settings: Settings, count: int, due_of: Any, label: str) -> None:
    """Write ``count`` timer requests straight to saga.timers, as a coordinator would: in
    the partition of each one's saga (murmur2), so a fired timer is not re-routed."""
    messages = RecordCodec()
    batching: dict[str, Any] = {"linger.ms": 50, "batch.size": 1_000_000}
    producer = clients.producer(settings.kafka, **batching)
    topic = settings.topic("saga.timers")
    for n in range(count):
        saga_id = f"{label}{n}"
        timer = f"{saga_id}:0:sleep:0"
        scheduled = ev.TimerScheduled(timer, 0, ev.TimerPurpose.SLEEP, due_of(n))
        value = messages.encode_timer(saga_id, scheduled)
        while True:
            try:
                producer.produce(topic, value, timer.encode(),
                                 partition=partition_of(saga_id, settings.partitions))
                break
            except BufferError:
                producer.poll(0.05)
        if n % 50_000 == 0:
            producer.poll(0)
    if producer.flush(300):
        raise RuntimeError("timer requests were not all delivered")


def fired_lateness(settings: Settings, label: str) -> list[int]:
    """Per fired timer of the sagas whose id starts with ``label``: from its due time to
    when its saga woke (the TimerFired the coordinator journaled), in ms."""
    topic = settings.topic("saga.journal")
    starts: dict[int, int | None] = dict.fromkeys(
        clients.partitions_of(settings.kafka, topic))
    due: dict[str, int] = {}
    late = []
    for record in read_journal(settings.kafka, topic, starts, RecordCodec()):
        entry = record.entry
        if entry is None or not entry.saga_id.startswith(label):
            continue
        if isinstance(entry.event, ev.TimerScheduled):
            due[entry.event.timer_id] = entry.event.due_ms
        elif isinstance(entry.event, ev.TimerFired) and entry.event.timer_id in due:
            late.append(entry.at_ms - due[entry.event.timer_id])
    return sorted(late)


def fired_records(settings: Settings, label: str) -> list[int]:
    """The firing times (``sent_at_ms``) of the TimerFired records the wheel produced into
    saga.inbox for sagas whose id starts with ``label``, one per timer: for load whose
    sagas do not exist, so nothing wakes (the downtime run)."""
    messages = RecordCodec()
    sent = []
    seen: set[str] = set()
    for _, value, _ in read_topic(settings.kafka, settings.topic("saga.inbox")):
        if value is None:
            continue
        inbox = messages.decode_inbox(value)
        if isinstance(inbox.value, FireTimer) and inbox.saga_id.startswith(label) \
                and inbox.value.timer_id not in seen:
            seen.add(inbox.value.timer_id)
            sent.append(int(messages.codec.decode(value)[1]["sent_at_ms"]))
    return sorted(sent)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def dir_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def lateness_with_pending(settings: Settings, pending: int, probes: int = 1000
                          ) -> dict[str, Any]:
    """``pending`` timers due in an hour, ``probes`` due over the 10 s after start-up."""
    far = int(time.time() * 1000) + 3_600_000
    load_timers(settings, pending, lambda n: far + n, "far")
    stack = Stack(settings, workflows="bench.workflows")
    process = stack.start(stack.add_coordinator("wheel").name)
    try:
        began = time.monotonic()
        while "caught up" not in stack.log_tail(process.name, 50):
            if time.monotonic() - began > 900:
                raise RuntimeError("the coordinator did not catch up in 15 minutes")
            time.sleep(0.5)
        catch_up_s = time.monotonic() - began
        # Probes are real sagas sleeping until a due time spread over ten seconds: their
        # timers go through the coordinator like any other.
        start = int(time.time() * 1000) + 3000
        for n in range(probes):
            stack.send(f"probe{n}", StartSaga("bench_nap",
                                              {"wake_at_ms": start + n * 10_000 // probes}))
        stack.flush()
        time.sleep(3 + 10 + 3)
        assert process.popen is not None
        memory = rss_mb(process.popen.pid)
    finally:
        stack.stop_all()
    late = fired_lateness(settings, "probe")
    if len(late) != probes:
        raise RuntimeError(f"{len(late)} of {probes} probe timers fired")
    return {"pending": pending, "probes": probes, "catch_up_s": round(catch_up_s, 1),
            "lateness_ms": {"p50": percentile(late, 0.5), "p99": percentile(late, 0.99),
                            "max": late[-1]},
            "coordinator_rss_mb": round(memory, 1),
            "index_on_disk_mb": round(dir_mb(settings.state_dir / "coordinator" / "wheel"
                                             / "timers"), 1)}


def catch_up_after_downtime(settings: Settings, per_second: int = 1000,
                            downtime_s: int = 60) -> dict[str, Any]:
    """Timers due at ``per_second`` through ``downtime_s`` seconds with no coordinator."""
    count = per_second * downtime_s
    now = int(time.time() * 1000)
    load_timers(settings, count, lambda n: now - downtime_s * 1000 + n * 1000 // per_second,
                "down")
    stack = Stack(settings)
    stack.start(stack.add_coordinator("wheel").name)
    try:
        deadline = time.monotonic() + 600
        while True:
            # cheap progress check: the inbox's end offsets (markers count too)
            if _inbox_end(settings) >= count:
                sent = fired_records(settings, "down")
                if len(sent) >= count:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("overdue timers did not all fire in 10 minutes")
            time.sleep(1)
    finally:
        stack.stop_all()
    seconds = max(0.001, (sent[-1] - sent[0]) / 1000)
    return {"overdue_timers": count, "fired": len(sent), "seconds": round(seconds, 2),
            "fired_per_s": round(len(sent) / seconds, 1)}


def _inbox_end(settings: Settings) -> int:
    from confluent_kafka import TopicPartition

    probe = clients.consumer(settings.kafka, "bench-watermarks")
    try:
        topic = settings.topic("saga.inbox")
        return sum(probe.get_watermark_offsets(TopicPartition(topic, p), 10)[1]
                   for p in range(settings.partitions))
    finally:
        probe.close()


def main_sizes(raw: str) -> list[int]:
    return [int(float(part)) for part in raw.split(",") if part]


