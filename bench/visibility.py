"""The visibility server: how soon a saga's end is visible through its API, and how many
reads of one saga it serves, each against a baseline measured in the same run.

* lag     order sagas sent at a steady rate (aiming at 500/s) through a coordinator, the
          five services and `saga server`. For every 25th saga: from its SagaCompleted's
          decision time (the journal entry's at_ms) to the answer of the API's long poll,
          GET /api/sagas/{id}/result?wait=30, that shows it ended. Baseline: to the moment
          a plain read_committed consumer tailing saga.journal receives that entry (what
          any Kafka reader could see).
* reads   GET /api/sagas/{id} over a hundred ids, by wrk from Debian's package (a C load
          generator: the Python server is what is measured), 8 connections for 10 s on
          loopback. Baseline: GET /healthz, the same server with no index work.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import TopicPartition

from saga.config import Settings
from saga.dev.audit import percentile
from saga.dev.stack import Stack
from saga.engine import events as ev
from saga.engine.inputs import DeliverSignal, StartSaga
from saga.kafka import clients
from saga.kafka.records import RecordCodec

PROBE_EVERY = 25


def lag_and_reads(settings: Settings, order_of: Any, sagas: int, rate: int = 500
                  ) -> dict[str, Any]:
    stack = Stack(settings, stock={"sku-1": 10**9, "sku-rare": 0})
    stack.start_all(coordinators=["vis"])
    server = stack.start(stack.add_server("bench").name)
    url = stack.url(server.name)
    try:
        _wait_ready(url)
        time.sleep(3)  # let the services join their groups
        ids = [f"v-{uuid.uuid4().hex[:6]}-{n:05d}" for n in range(sagas)]
        probes = set(ids[::PROBE_EVERY])
        tail = _JournalTail(settings, probes)
        tail.start()
        watcher = _ApiWatcher(url)
        watcher.start()
        began = time.monotonic()
        for n, saga_id in enumerate(ids):
            stack.send(saga_id, StartSaga("order", order_of(saga_id, n % 5 == 0)))
            stack.send(saga_id, DeliverSignal("warehouse_picked", None))
            if saga_id in probes:
                watcher.watch(saga_id)
            if n % 50 == 49:
                stack.flush()
                time.sleep(max(0.0, began + (n + 1) / rate - time.monotonic()))
        stack.flush()
        achieved = sagas / (time.monotonic() - began)
        deadline = time.monotonic() + 600
        while len(watcher.seen) + len(watcher.failed) < len(probes) and \
                time.monotonic() < deadline:
            time.sleep(0.5)
        watcher.stop()
        tail.stop()
        api_lag = sorted(watcher.seen[i] - tail.decided[i] for i in watcher.seen
                         if i in tail.decided)
        kafka_lag = sorted(tail.received[i] - tail.decided[i] for i in tail.received
                           if i in tail.decided)
        # Per probe, from when any read_committed consumer had the entry (so after the
        # commit) to the API showing it: what the index itself adds.
        index_lag = sorted(watcher.seen[i] - tail.received[i] for i in watcher.seen
                           if i in tail.received)
        reads = _reads(url, ids[:100])
    finally:
        stack.stop_all()
    return {
        "sagas": sagas, "aimed_per_s": rate, "achieved_per_s": round(achieved, 1),
        "probes": len(probes), "seen": len(api_lag), "watch_failures": len(watcher.failed),
        "watcher": "long poll GET /api/sagas/{id}/result?wait=30 per probe",
        "api_lag_ms": {"p50": percentile(api_lag, 0.5), "p99": percentile(api_lag, 0.99),
                       "max": api_lag[-1] if api_lag else None},
        "journal_lag_ms": {"p50": percentile(kafka_lag, 0.5),
                           "p99": percentile(kafka_lag, 0.99)},
        "after_journal_consumer_ms": {"p50": percentile(index_lag, 0.5),
                                      "p99": percentile(index_lag, 0.99),
                                      "max": index_lag[-1] if index_lag else None},
        "reads": reads,
    }


def _wait_ready(url: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"the server at {url} was not ready in 2 minutes")


class _JournalTail(threading.Thread):
    """Tails saga.journal read_committed from its end: for each probe, the SagaCompleted
    entry's decision time, and when this consumer received it."""

    def __init__(self, settings: Settings, probes: set[str]) -> None:
        super().__init__(daemon=True)
        self.settings = settings
        self.probes = probes
        self.decided: dict[str, int] = {}
        self.received: dict[str, int] = {}
        self._halt = threading.Event()

    def run(self) -> None:
        topic = self.settings.topic("saga.journal")
        kafka = self.settings.kafka
        reader = clients.consumer(kafka, f"bench-tail-{uuid.uuid4().hex}")
        reader.assign([TopicPartition(topic, p, clients.watermarks(reader, topic, p)[1])
                       for p in clients.partitions_of(kafka, topic)])
        codec = RecordCodec()
        try:
            while not self._halt.is_set():
                for message in reader.consume(500, 0.05):
                    if message.error() is not None:
                        continue
                    now = int(time.time() * 1000)
                    entry = codec.decode_entry(message.value())
                    if entry.saga_id in self.probes and isinstance(entry.event,
                                                                    ev.SagaCompleted):
                        self.decided[entry.saga_id] = entry.at_ms
                        self.received[entry.saga_id] = now
        finally:
            reader.close()

    def stop(self) -> None:
        self._halt.set()
        self.join(30)


class _ApiWatcher(threading.Thread):
    """For each probe, from when it is sent: GET /api/sagas/{id}/result?wait=30, the API's
    long poll, which answers as soon as the index shows the saga ended; while the index
    does not know the saga yet (404), the same request again after 50 ms.

    One request per probe in flight, answered by the server when its index changes: what
    is measured is the index, not the watcher (a watcher that polled every probe in turn
    added a round of up to 200 sequential requests to each figure before 2026-12-02)."""

    RETRY_S = 0.05

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.seen: dict[str, int] = {}
        self.failed: dict[str, str] = {}
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._client: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._client = httpx.AsyncClient(base_url=self.url, timeout=60,
                                         limits=httpx.Limits(max_connections=500))
        self._ready.set()
        self._loop.run_forever()

    def watch(self, saga_id: str) -> None:
        self._ready.wait(10)
        self._loop.call_soon_threadsafe(self._spawn, saga_id)

    def _spawn(self, saga_id: str) -> None:
        task = self._loop.create_task(self._await_end(saga_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _await_end(self, saga_id: str) -> None:
        assert self._client is not None
        while True:
            try:
                response = await self._client.get(f"/api/sagas/{saga_id}/result",
                                                  params={"wait": 30})
            except httpx.HTTPError as exc:
                self.failed[saga_id] = repr(exc)
                return
            if response.status_code == 404:
                await asyncio.sleep(self.RETRY_S)
            elif response.status_code == 200 and response.json()["done"]:
                self.seen[saga_id] = int(time.time() * 1000)
                return
            elif response.status_code != 200:
                self.failed[saga_id] = f"{response.status_code} {response.text[:200]}"
                return

    def stop(self) -> None:
        async def close() -> None:
            for task in list(self._tasks):
                task.cancel()
            if self._client is not None:
                await self._client.aclose()
            self._loop.stop()

        self._loop.call_soon_threadsafe(lambda: self._loop.create_task(close()))
        self.join(30)


def _reads(url: str, ids: list[str]) -> dict[str, Any]:
    wrk = shutil.which("wrk")
    if wrk is None:
        return {"skipped": "wrk is not installed (apt-get install wrk)"}
    with tempfile.TemporaryDirectory(prefix="saga-bench-wrk-") as tmp:
        script = Path(tmp) / "ids.lua"
        shuffled = random.Random(1).sample(ids, len(ids))
        script.write_text(
            "local ids = {" + ",".join(f'"{i}"' for i in shuffled) + "}\n"
            "local n = 0\nrequest = function()\n  n = n % #ids + 1\n"
            "  return wrk.format('GET', '/api/sagas/' .. ids[n])\nend\n")
        sagas = _wrk([wrk, "-t2", "-c8", "-d10s", "-s", str(script), url])
        health = _wrk([wrk, "-t2", "-c8", "-d10s", f"{url}/healthz"])
    return {"get_saga_per_s": sagas["per_s"], "get_saga_latency": sagas["latency"],
            "healthz_per_s": health["per_s"], "healthz_latency": health["latency"],
            "vs_healthz": round(sagas["per_s"] / health["per_s"], 2) if health["per_s"]
            else None, "tool": "wrk -t2 -c8 -d10s"}


def _wrk(argv: list[str]) -> dict[str, Any]:
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True).stdout
    per_s = 0.0
    latency = ""
    for line in out.splitlines():
        words = line.split()
        if line.startswith("Requests/sec:"):
            per_s = float(words[1])
        elif words and words[0] == "Latency":
            latency = f"avg {words[1]}, stdev {words[2]}, max {words[3]}"
        if "Non-2xx" in line:
            raise RuntimeError(f"wrk saw errors: {line}")
    return {"per_s": round(per_s, 1), "latency": latency}
