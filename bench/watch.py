"""What the benchmarks watch with: the journal as a plain read_committed consumer sees it,
and the CPU time of the processes under test.

The watcher reads only record headers (``saga.event``) and keys, never a value, so it
costs the machine little while the system under test shares its two cores: the old
way, opening every coordinator projection and decoding every state four times a
second, took a fifth of the machine in the end-to-end run.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from saga.config import Settings
from saga.kafka import clients, headers

_ENDINGS = {b"SagaCompleted", b"SagaFailed", b"SagaCancelled"}


class JournalWatcher:
    """Tails saga.journal from its start in a thread: which sagas started and ended, and
    when (wall clock of this process, in ms), as a read_committed consumer sees them."""

    def __init__(self, settings: Settings) -> None:
        topic = settings.topic("saga.journal")
        # librdkafka's own fetch wait (500 ms): a fetch returns as soon as a transaction
        # commits records into it, so a shorter wait sees nothing sooner, and at 10 ms
        # the watcher's idle fetches cost the broker a tenth of a core of the two the
        # system under test shares (bench/results/20261207T090000Z-watcher-and-broker-jit.md).
        self._consumer = clients.consumer(settings.kafka, f"bench-watch-{os.getpid()}")
        clients.assign(self._consumer, [TopicPartition(topic, p, OFFSET_BEGINNING)
                                        for p in clients.partitions_of(settings.kafka, topic)])
        self.started: dict[str, float] = {}
        self.ended: dict[str, float] = {}
        self.entries = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for message in self._consumer.consume(1000, 0.05):
                if message.error() is not None:
                    continue
                self.entries += 1
                key = message.key()
                if not isinstance(key, bytes):
                    continue
                event = next((pair[1] for pair in message.headers() or []
                              if pair[0] == headers.EVENT), None)
                if event == b"SagaStarted":
                    self.started.setdefault(key.decode(), time.time() * 1000)
                elif event in _ENDINGS:
                    self.ended.setdefault(key.decode(), time.time() * 1000)

    def wait_started(self, ids: Iterable[str], timeout_s: float) -> None:
        self._wait(ids, self.started, timeout_s, "started", None)

    def wait_count_started(self, count: int, timeout_s: float,
                           say: Callable[[str], None] | None = None) -> None:
        """Wait until ``count`` sagas have started (any ids: a million would not be
        listed one by one)."""
        began, last = time.monotonic(), 0
        while len(self.started) < count:
            if time.monotonic() - began > timeout_s:
                raise RuntimeError(f"only {len(self.started)}/{count} sagas started in "
                                   f"{timeout_s}s")
            if say is not None and len(self.started) - last >= max(1, count // 10):
                last = len(self.started)
                say(f"  {last}/{count} sagas started")
            time.sleep(0.2)

    def wait_ended(self, ids: Iterable[str], timeout_s: float,
                   say: Callable[[str], None] | None = None) -> float:
        """Wait until every saga of ``ids`` has ended; the seconds it took."""
        return self._wait(ids, self.ended, timeout_s, "ended", say)

    def _wait(self, ids: Iterable[str], seen: dict[str, float], timeout_s: float, what: str,
              say: Callable[[str], None] | None) -> float:
        wanted = list(ids)
        began = time.monotonic()
        last = -1
        while True:
            done = sum(1 for saga_id in wanted if saga_id in seen)
            if say is not None and done != last and (done == len(wanted) or done - last >= 500
                                                     or last < 0):
                say(f"  {done}/{len(wanted)} sagas {what}")
                last = done
            if done == len(wanted):
                return time.monotonic() - began
            if time.monotonic() - began > timeout_s:
                raise RuntimeError(f"only {done}/{len(wanted)} sagas {what} in {timeout_s}s")
            time.sleep(0.05)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._consumer.close()


def process_cpu_s(pid: int, *, children: bool = False) -> float:
    """User + system CPU seconds ``pid`` has used so far (0 once it is gone); with
    ``children``, those of its children it has reaped too."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat_cpu_s(stat.read(), children=children)
    except FileNotFoundError:
        return 0.0


def stat_cpu_s(stat: str, *, children: bool = False) -> float:
    """User + system CPU seconds in the text of a /proc ``stat`` file (a process's, or
    one thread's under ``task/``)."""
    fields = stat.rsplit(")", 1)[1].split()
    used = fields[11:15] if children else fields[11:13]
    return sum(int(ticks) for ticks in used) / os.sysconf("SC_CLK_TCK")


class Usage:
    """What a phase of a run cost: CPU seconds per process, and how busy the whole
    machine was (from /proc/stat), between ``Usage(pids)`` and ``spent(sagas)``."""

    def __init__(self, pids: dict[str, int]) -> None:
        self._pids = pids
        self._began = {name: process_cpu_s(pid) for name, pid in pids.items()}
        self._idle, self._total = _machine_ticks()

    def spent(self, sagas: int) -> dict[str, Any]:
        """CPU µs per saga of each process, and the machine's busy share (0-1)."""
        idle, total = _machine_ticks()
        ticks = max(1, total - self._total)
        return {"cpu_us_per_saga": {
                    name.removeprefix("service-"):
                        round((process_cpu_s(pid) - self._began[name]) / max(1, sagas) * 1e6)
                    for name, pid in sorted(self._pids.items())},
                "machine_busy": round(1 - (idle - self._idle) / ticks, 3)}


def _machine_ticks() -> tuple[int, int]:
    """(idle + iowait, all) jiffies of every core since boot."""
    with open("/proc/stat") as stat:
        ticks = [int(t) for t in stat.readline().split()[1:]]
    return ticks[3] + ticks[4], sum(ticks)
