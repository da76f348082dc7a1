"""The pure parts of `make bench`: every pace sends the same mix of orders, and a paced
phase's cost is read from /proc (no broker needed)."""

from __future__ import annotations

import ctypes
import os
import threading
import time
from typing import Any

import pytest

from bench import broker, run
from bench.watch import Usage
from saga.dev.embedded import ClusterState, Node
from saga.engine.inputs import StartSaga
from saga.errors import EmbeddedKafkaError


class _Recorder:
    """Stands in for the Stack: keeps what would have been sent."""

    def __init__(self) -> None:
        self.starts: list[dict[str, Any]] = []

    def send(self, saga_id: str, value: object) -> None:
        if isinstance(value, StartSaga):
            self.starts.append(value.input)

    def flush(self) -> None:
        pass


def _rare(starts: list[dict[str, Any]]) -> int:
    return sum(1 for order in starts if order["items"][0]["sku"] == "sku-rare")


def test_a_paced_phase_sends_one_order_in_five_out_of_stock_like_a_burst() -> None:
    burst, paced = _Recorder(), _Recorder()
    run.send_orders(burst, 50, "b")  # type: ignore[arg-type]
    sent: list[str] = []
    for tick in range(50):  # a pace of one order per tick, as at 50 sagas/s
        sent.extend(run.send_orders(paced, 1, f"p{tick:04d}",  # type: ignore[arg-type]
                                    first=len(sent)))
    assert _rare(burst.starts) == 10
    # Counted from zero at every tick, as it was, a pace of one order per tick sent the
    # rare sku only: the light-load latency measured compensated sagas alone.
    assert _rare(paced.starts) == 10
    assert len(set(sent)) == 50


def test_a_phase_cost_is_cpu_per_saga_per_process_and_the_machine_busy_share() -> None:
    usage = Usage({"me": os.getpid()})
    deadline = os.times().elapsed + 0.2
    while os.times().elapsed < deadline:  # burn CPU this process can be charged for
        sum(range(1000))
    cost = usage.spent(sagas=4)
    assert cost["cpu_us_per_saga"]["me"] > 10_000  # ~0.2 s over 4 sagas, at least a bit
    assert 0 < cost["machine_busy"] <= 1


def test_the_bench_broker_runs_the_full_jit_unless_told_otherwise(monkeypatch: Any) -> None:
    monkeypatch.delenv("SAGA_KAFKA_JVM_OPTS", raising=False)
    assert broker.jvm_opts() == []  # the JVM's defaults: C1 and C2, as in production
    monkeypatch.setenv("SAGA_KAFKA_JVM_OPTS", "-XX:TieredStopAtLevel=1 -Xss1m")
    assert broker.jvm_opts() == ["-XX:TieredStopAtLevel=1", "-Xss1m"]


def _running(jvm_opts: list[str] | None) -> ClusterState:
    return ClusterState("4.1.1", "c", 1, [Node(1, 29092, 29192, pid=1, jvm_opts=jvm_opts)])


def test_the_bench_measures_a_running_broker_only_if_it_has_the_asked_jit() -> None:
    broker.refuse_other_options(_running([]), [])
    broker.refuse_other_options(_running(["-XX:TieredStopAtLevel=1"]),
                                ["-XX:TieredStopAtLevel=1"])
    # `make demo` or `make profile` left a development broker (C1 only) running
    with pytest.raises(EmbeddedKafkaError) as refused:
        broker.refuse_other_options(_running(["-XX:TieredStopAtLevel=1"]), [])
    assert "-XX:TieredStopAtLevel=1" in refused.value.message
    assert "the JVM's defaults (C1 and C2)" in refused.value.message
    assert "make kafka-stop" in str(refused.value.hint)
    with pytest.raises(EmbeddedKafkaError, match="not recorded"):
        broker.refuse_other_options(_running(None), [])


def test_the_jit_cpu_is_read_from_the_threads_named_as_the_jvm_names_its_compilers() -> None:
    named = threading.Event()
    done = threading.Event()

    def compiler() -> None:
        # Linux names a thread in its comm file, the way /proc shows a JVM's threads.
        libc = ctypes.CDLL(None)
        libc.prctl(15, b"C2 CompilerThre", 0, 0, 0)  # PR_SET_NAME
        named.set()
        deadline = time.monotonic() + 10  # a bound, should the test fail before done
        while not done.is_set() and time.monotonic() < deadline:
            sum(range(1000))

    before = broker.jit_cpu_s(os.getpid())
    thread = threading.Thread(target=compiler)
    thread.start()
    named.wait(5)
    time.sleep(0.3)
    during = broker.jit_cpu_s(os.getpid())
    done.set()
    thread.join()
    assert before == 0.0  # no thread of this process had the name before
    assert during > 0.0
    assert broker.jit_cpu_s(None) == 0.0  # a broker the bench did not start


def test_the_results_say_which_broker_and_warm_up_they_were_measured_after() -> None:
    said = run._render_broker({"broker": {
        "ours": True, "jvm_opts": "the JVM's defaults (C1 and C2)",
        "warm_up": {"seconds": 90.0, "paced_sagas": 4500, "rate_per_s": 50.0,
                    "burst_sagas": 1000, "broker_jit_cpu_s": 31.2}}})
    assert "JIT options: the JVM's defaults (C1 and C2)" in said[0]
    assert "4500 sagas in 90 s, then 1000 at once" in said[0]
    assert "31.2 CPU s" in said[0]
    assert run._render_broker({"broker": {"ours": False}})[0] == \
        "Broker: given by SAGA_BOOTSTRAP_SERVERS."
    assert run._render_broker({}) == []  # older results
