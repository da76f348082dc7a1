"""The broker a benchmark starts for itself: the JVM's full JIT, as a production broker
runs (the development brokers compile with C1 only, which costs less for their minutes of
life), and how much its compilers are still working.

C2 needs the workload itself to warm up on: a warm-up of bare transactional loops left
it compiling through every steady phase after it
(bench/results/20261207T090000Z-watcher-and-broker-jit.md).
"""

from __future__ import annotations

import os
from pathlib import Path

from bench.watch import stat_cpu_s


def jvm_opts() -> list[str]:
    """The JIT options of the broker the bench starts: SAGA_KAFKA_JVM_OPTS when set, else
    the JVM's defaults. At a steady 10 sagas/s a warm broker with C2 took about half the
    CPU per saga of one with C1 only."""
    return os.environ.get("SAGA_KAFKA_JVM_OPTS", "").split()


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
