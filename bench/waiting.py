"""Resident memory per waiting saga: how much of a coordinator's memory each saga that
waits (for a signal, under a day-long timer) costs, at up to a million of them.

Every start is in saga.inbox before the coordinator starts (the fastest way to make a
million sagas; the engine decides each for real: SagaStarted, WaitStarted,
TimerScheduled, a timer record). The coordinator's resident set size (VmRSS) is read
once it has caught up and decided nothing yet (the baseline, same process), then at
each checkpoint once every saga up to it waits. Per waiting saga: the growth over the
baseline divided by the sagas. What a waiting saga holds lives in RocksDB (its state,
its entries, its timer in the index); memory holds only the bounded caches.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from bench.timers import dir_mb, rss_mb
from bench.watch import JournalWatcher
from saga.config import Settings
from saga.dev.stack import Stack
from saga.engine.inputs import StartSaga
from saga.kafka import clients
from saga.kafka.records import RecordCodec

Say = Callable[[str], None]


def _send_starts(settings: Settings, count: int, label: str) -> None:
    codec = RecordCodec()
    batching: dict[str, Any] = {"linger.ms": 50, "batch.size": 1_000_000}
    producer = clients.producer(settings.kafka, **batching)
    topic = settings.topic("saga.inbox")
    body = codec.encode_inbox(f"{label}0", StartSaga("bench_wait", {}))
    for n in range(count):
        saga_id = f"{label}{n}"
        value = body if n == 0 else codec.encode_inbox(saga_id, StartSaga("bench_wait", {}))
        while True:
            try:
                producer.produce(topic, value, saga_id.encode())
                break
            except BufferError:
                producer.poll(0.1)
        if n % 10000 == 0:
            producer.poll(0)
    producer.flush(300)


def memory_per_waiting_saga(settings: Settings, count: int, say: Say,
                            checkpoints: int = 4) -> dict[str, Any]:
    label = "wait-"
    began = time.monotonic()
    _send_starts(settings, count, label)
    say(f"  {count} starts written in {time.monotonic() - began:.0f}s")
    stack = Stack(settings, workflows="bench.workflows")
    watcher = JournalWatcher(settings)
    process = stack.start(stack.add_coordinator("waiting", "--batch-size", "500").name)
    marks = sorted({max(1, count * (k + 1) // checkpoints) for k in range(checkpoints)})
    samples = []
    try:
        assert process.popen is not None
        pid = process.popen.pid
        # The baseline: started, partitions assigned, nothing decided yet. The inbox is
        # full, so the first decision follows at once; the RSS just before it is the
        # process with its libraries, clients and (empty) caches.
        while "assigned partitions" not in stack.log_tail(process.name, 50):
            time.sleep(0.05)
        baseline = rss_mb(pid)
        decided_began = time.monotonic()
        for mark in marks:
            watcher.wait_count_started(mark, 3600, say)
            time.sleep(1)  # the batch that reached the mark commits and is applied
            samples.append({"waiting": mark, "rss_mb": round(rss_mb(pid), 1)})
            say(f"  {samples[-1]}")
        decided_s = time.monotonic() - decided_began
    finally:
        stack.stop_all()
        watcher.close()
    peak = samples[-1]
    per_saga = (peak["rss_mb"] - baseline) * 2**20 / count
    return {"waiting": count, "baseline_rss_mb": round(baseline, 1), "samples": samples,
            "rss_bytes_per_waiting_saga": round(per_saga, 1),
            "decided_s": round(decided_s, 1),
            "starts_per_s": round(count / decided_s, 1),
            "projection_on_disk_mb": round(dir_mb(settings.state_dir / "coordinator"
                                                  / "waiting"), 1)}
