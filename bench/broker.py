"""The broker a benchmark starts for itself: the JVM's full JIT, as a production broker
runs (the development brokers compile with C1 only, which costs less for their minutes of
life), and how much its compilers are still working.

C2 needs the workload itself to warm up on: a warm-up of bare transactional loops left
it compiling through every steady phase after it
(bench/results/20261207T090000Z-watcher-and-broker-jit.md).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from bench.watch import stat_cpu_s
from saga.dev.embedded import ClusterState, EmbeddedKafka
from saga.errors import EmbeddedKafkaError


def jvm_opts() -> list[str]:
    """The JIT options of the broker the bench starts: SAGA_KAFKA_JVM_OPTS when set, else
    the JVM's defaults. At a steady 10 sagas/s a warm broker with C2 took about half the
    CPU per saga of one with C1 only."""
    return os.environ.get("SAGA_KAFKA_JVM_OPTS", "").split()


def start(state_dir: Path, base_port: int, say: Callable[[str], None]) -> ClusterState:
    """The bench's one-broker cluster under ``state_dir``, started with ``jvm_opts()``.

    A cluster already running there (`make demo`, `make profile` and `saga kafka start`
    leave theirs running) is used only if it was started with the same options:
    starting is idempotent, and a development broker (C1 only) measured as if it had
    the full JIT would put a false broker in the results."""
    wanted = jvm_opts()
    state = EmbeddedKafka(state_dir, base_port=base_port, progress=say,
                          jvm_opts=wanted).start(1)
    refuse_other_options(state, wanted)
    return state


def refuse_other_options(state: ClusterState, wanted: list[str]) -> None:
    running = state.nodes[0].jvm_opts
    if running != wanted:
        raise EmbeddedKafkaError(
            f"the broker running at {state.bootstrap_servers} was started with JIT "
            f"options {describe(running)}; the bench measures one with {describe(wanted)}",
            hint="stop it (`make kafka-stop`, or `saga kafka stop` with the same "
            "SAGA_STATE_DIR) and run the bench again" + (
                "" if running is None else "; to measure that broker as it is, set "
                f"SAGA_KAFKA_JVM_OPTS='{' '.join(running)}'"))


def describe(options: list[str] | None) -> str:
    if options is None:
        return "not recorded (started by an older build)"
    return " ".join(options) or "the JVM's defaults (C1 and C2)"


def jit_cpu_s(pid: int | None) -> float:
    """CPU seconds the JVM's compiler threads in ``pid`` have used (0 when unknown)."""
    spent = 0.0
    for task in Path(f"/proc/{pid}/task").glob("*") if pid else ():
        try:
            stat = (task / "stat").read_text()
        except OSError:  # the thread ended
            continue
        if stat[stat.index("(") + 1:].startswith(("C1 Compiler", "C2 Compiler")):
            spent += stat_cpu_s(stat)
    return spent
