"""kafka-saga in `make bench-peers`: the order saga (services/examples/order.py) on a fresh
embedded Kafka broker, one coordinator and the five example service processes. The broker
runs the JVM's full JIT, warmed up on the workload itself first (JIT_WARM_UP), as a
production broker is.

Unlike the peers, whose activities run inside their worker, every step here is a
command to another process over Kafka and a reply back (the five services), each
service committing its effect and its reply in one Kafka transaction: the comparison
favours the peers.

The client keeps ``concurrency`` sagas in flight: it sends a saga's start and its
``warehouse_picked`` signal to saga.inbox, and learns of its end from a read_committed
consumer of saga.journal (bench/watch.py: the way an application waits for many results
at once); a saga's latency runs from its send to that consumer seeing its end. Each
saga's result is checked in the projection once the load is over.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench import broker
from bench.peers import common
from bench.watch import JournalWatcher
from saga.config import Settings
from saga.dev.embedded import KAFKA_VERSION, EmbeddedKafka
from saga.dev.stack import Stack
from saga.engine.inputs import DeliverSignal, StartSaga
from saga.kafka.topics import admin_client, create_topics, load_specs

#: Its own broker, away from the ports `make test`, `make bench` and the smoke use.
BROKER_PORT = 29692
STOCK = {"sku-1": 10**9, "sku-rare": 0}
#: Sagas that wait out the assignment and start-up before the common warm-up.
WARM_UP = 20
#: Sagas run before the common warm-up so that the broker's C2 compiler has compiled
#: what it serves, as a production broker's has (bench/broker.py); about a minute here.
JIT_WARM_UP = 6000


def _version() -> str:
    from importlib.metadata import version

    return f"kafka-saga {version('kafka-saga')}, Apache Kafka {KAFKA_VERSION} (one broker)"


def run(sagas: int, concurrency: int, work: Path, say: Callable[[str], None]) -> common.PeerResult:
    state_dir = work / "state"
    state_dir.mkdir(parents=True, exist_ok=True)
    kafka = EmbeddedKafka(state_dir, base_port=BROKER_PORT, progress=say,
                          jvm_opts=broker.jvm_opts())
    cluster = kafka.start(1)
    try:
        settings = Settings.from_env().with_(bootstrap_servers=cluster.bootstrap_servers,
                                             state_dir=state_dir, topic_prefix="peers.")
        create_topics(admin_client(settings.kafka), load_specs(settings))
        stack = Stack(settings, stock=STOCK)
        stack.start_all(coordinators=["peers"])
        watcher = JournalWatcher(settings)
        try:
            return _measure(stack, watcher, cluster.nodes[0].pid, sagas, concurrency, say)
        finally:
            watcher.close()
            stack.stop_all()
    finally:
        kafka.stop()


def _measure(stack: Stack, watcher: JournalWatcher, broker_pid: int, sagas: int,
             concurrency: int, say: Callable[[str], None]) -> common.PeerResult:
    # The first sagas wait out the partition assignment and the services' start-up
    # (every peer's driver likewise waits for its first saga); then the same unmeasured
    # warm-up as every system's (common.WARM_UP).
    first = [_send(stack, f"ready-{n}", n) for n in range(WARM_UP)]
    stack.flush()
    watcher.wait_ended(first, 180, say)
    say(f"the broker's JIT warm-up: {JIT_WARM_UP} sagas, {concurrency} in flight")
    _keep_in_flight(stack, watcher, "jit", JIT_WARM_UP, concurrency)
    say(f"warm-up: {common.WARM_UP} sagas, {concurrency} in flight")
    _keep_in_flight(stack, watcher, "warm", common.WARM_UP, concurrency)
    pids = {name: p.popen.pid for name, p in stack.processes.items() if p.popen}
    meter = common.CpuMeter({"kafka-broker": broker_pid, **pids})
    say(f"measuring: {sagas} sagas, {concurrency} in flight")
    compiling = broker.jit_cpu_s(broker_pid)
    meter.start()
    latencies, wall_s = _keep_in_flight(stack, watcher, "order", sagas, concurrency)
    spent = meter.stop()
    say(f"the broker's JIT compilers used {broker.jit_cpu_s(broker_pid) - compiling:.2f} "
        "CPU s while it was measured")
    outcomes = _outcomes(stack, sagas)
    return common.PeerResult(
        system="kafka-saga", version=_version(), sagas=sagas, concurrency=concurrency,
        wall_s=round(wall_s, 2), sagas_per_s=round(sagas / wall_s, 1),
        latency_ms=common.latency_summary(latencies),
        cpu_s_per_saga=round(sum(spent.values()) / sagas, 5), cpu_by_process=spent,
        persists="every decision in saga.journal, every command, reply and service "
        "effect in Kafka topics, committed in Kafka transactions; RocksDB projections "
        "as caches",
        fsync="no: Kafka's default (no flush per write; durability by replication, "
        "here one broker, and the OS page cache)",
        outcomes=outcomes)


def _keep_in_flight(stack: Stack, watcher: JournalWatcher, prefix: str, sagas: int,
                    concurrency: int) -> tuple[list[float], float]:
    """Each saga's latency (ms) and the wall time, ``concurrency`` kept in flight."""
    sent_at: dict[str, float] = {}
    in_flight: set[str] = set()
    latencies: list[float] = []
    began = time.perf_counter()
    following = 0
    while len(latencies) < sagas:
        while len(in_flight) < concurrency and following < sagas:
            saga_id = _send(stack, f"{prefix}-{following}", following)
            sent_at[saga_id] = time.time() * 1000
            in_flight.add(saga_id)
            following += 1
        stack.flush()
        for saga_id in [s for s in in_flight if s in watcher.ended]:
            latencies.append(watcher.ended[saga_id] - sent_at[saga_id])
            in_flight.discard(saga_id)
        if time.perf_counter() - began > 600:
            raise RuntimeError(f"only {len(latencies)}/{sagas} sagas ended in 600 s")
        time.sleep(0.001)
    return latencies, time.perf_counter() - began


def _send(stack: Stack, saga_id: str, n: int) -> str:
    stack.send(saga_id, StartSaga("order", common.order_input(saga_id, n)))
    stack.send(saga_id, DeliverSignal(common.SIGNAL, None))
    return saga_id


def _outcomes(stack: Stack, sagas: int) -> dict[str, int]:
    """Each saga's result status, checked against the one it must have."""
    states = stack.states()
    outcomes: dict[str, int] = {}
    for n in range(sagas):
        state = states[f"order-{n}"]
        status = (state.result or {}).get("status")
        if status != common.expected_status(n):
            raise AssertionError(f"order-{n} ended {state.status} with {state.result!r}")
        outcomes[status] = outcomes.get(status, 0) + 1
    return outcomes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.peers.kafka_saga_peer", description=__doc__)
    parser.add_argument("--sagas", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--work", type=Path, required=True)
    args = parser.parse_args(argv)
    result = run(args.sagas, args.concurrency, args.work,
                 lambda line: print(f"[kafka-saga] {line}", file=sys.stderr, flush=True))
    print(json.dumps(result.to_json()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
