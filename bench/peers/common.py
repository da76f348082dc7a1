"""What every system in `make bench-peers` runs, and what it reports.

The order saga, the same on every system: charge the payment; reserve the stock (every
fifth order asks for a SKU that is out of stock: the reservation fails as a business
error, the charge is refunded and the saga ends "cancelled"); wait for the
``warehouse_picked`` signal, which the client sends right after the start; schedule the
shipment; send the confirmation. The activities are in-process functions that only
build a small dict (the same work for every system): what is measured is the engine's
durability and coordination, not the services.

The load: ``sagas`` sagas, ``concurrency`` of them in flight at all times; each is
started, signalled and awaited by the client, and its end-to-end latency runs from the
start call to the result.
"""

from __future__ import annotations

import asyncio
import math
import os
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

#: Every fifth order is out of stock.
RARE_EVERY = 5
#: Sagas every system runs, the same concurrency kept in flight, before anything is
#: measured (the same for all): connections, caches and JITs warm, first-use work done.
WARM_UP = 200
#: The warm-up's saga numbers start here, so its ids never meet the measured ones'.
WARM_UP_FIRST = 1_000_000
SIGNAL = "warehouse_picked"


def order_input(saga_id: str, n: int) -> dict[str, Any]:
    rare = n % RARE_EVERY == 0
    return {"id": saga_id, "customer": "c-1", "amount_cents": 4599,
            "items": [{"sku": "sku-rare" if rare else "sku-1", "qty": 1}]}


class OutOfStock(Exception):  # the business error, by its own name
    pass


# ---- the activities: identical on every system --------------------------------------
def charge(order: dict[str, Any]) -> dict[str, Any]:
    return {"charge_id": f"ch-{order['id']}", "amount_cents": order["amount_cents"]}


def refund(order: dict[str, Any]) -> dict[str, Any]:
    return {"refund_id": f"rf-{order['id']}"}


def reserve(order: dict[str, Any]) -> dict[str, Any]:
    if any(item["sku"] == "sku-rare" for item in order["items"]):
        raise OutOfStock("out_of_stock")
    return {"reservation_id": f"rs-{order['id']}"}


def schedule_shipment(order: dict[str, Any]) -> dict[str, Any]:
    return {"id": f"tr-{order['id']}"}


def send_confirmation(order_id: str, tracking: dict[str, Any]) -> dict[str, Any]:
    return {"sent": True, "order_id": order_id, "tracking": tracking["id"]}


def expected_status(n: int) -> str:
    return "cancelled" if n % RARE_EVERY == 0 else "completed"


@dataclass(frozen=True)
class PeerResult:
    system: str  # e.g. "temporal", "dbos-sqlite", "dbos-postgres", "restate", "kafka-saga"
    version: str  # the server's and SDK's versions
    sagas: int
    concurrency: int
    wall_s: float  # first start to last result
    sagas_per_s: float
    latency_ms: dict[str, float]  # p50, p90, p99, max: start call -> result, per saga
    cpu_s_per_saga: float  # user+system CPU of every process of the system, client included
    cpu_by_process: dict[str, float]  # CPU seconds per process name, over the load
    persists: str  # what it writes, and where
    fsync: str  # whether a step waits for fsync, in the system's own words
    outcomes: dict[str, int] = field(default_factory=dict)  # status -> count; all checked

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank percentile: the smallest value at least ``q`` of them are under."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def latency_summary(latencies_ms: list[float]) -> dict[str, float]:
    return {"p50": round(percentile(latencies_ms, 0.50), 1),
            "p90": round(percentile(latencies_ms, 0.90), 1),
            "p99": round(percentile(latencies_ms, 0.99), 1),
            "max": round(max(latencies_ms, default=0.0), 1)}


def tree_pids(pid: int) -> list[int]:
    """``pid`` and its live descendants (a server started through a wrapper script)."""
    found = [pid]
    for child in Path("/proc").iterdir():
        if not child.name.isdigit():
            continue
        try:
            parent = int((child / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue
        if parent == pid:
            found.extend(tree_pids(int(child.name)))
    return found


class CpuMeter:
    """CPU seconds spent by named processes (and their descendants) between start() and
    stop(); this process is always counted as "client"."""

    def __init__(self, processes: dict[str, int]) -> None:
        self.processes = dict(processes)
        self._began: dict[str, float] = {}
        self.spent: dict[str, float] = {}

    def _now(self) -> dict[str, float]:
        # Imported here: this module stays light for the drivers' sandboxes (Temporal's).
        from bench.watch import process_cpu_s

        now = {name: sum(process_cpu_s(p, children=True) for p in tree_pids(pid))
               for name, pid in self.processes.items()}
        times = os.times()
        now["client"] = times.user + times.system
        return now

    def start(self) -> None:
        self._began = self._now()

    def stop(self) -> dict[str, float]:
        end = self._now()
        self.spent = {name: round(end[name] - self._began.get(name, 0.0), 3) for name in end}
        return self.spent


async def keep_in_flight(count: int, concurrency: int, one: Callable[[int], Awaitable[str]],
                         *, first: int = 0) -> tuple[list[float], dict[str, int], float]:
    """Run ``one(n)`` for n in range(first, first + count), ``concurrency`` at a time;
    each returns the saga's final status. Returns each latency (ms), the count of each
    status, and the wall time from the first start to the last end."""
    latencies: list[float] = []
    outcomes: dict[str, int] = {}
    queue = iter(range(first, first + count))

    async def worker() -> None:
        for n in queue:
            began = time.perf_counter()
            status = await one(n)
            latencies.append((time.perf_counter() - began) * 1000)
            if status != expected_status(n):
                raise AssertionError(f"saga {n} ended {status!r}, not {expected_status(n)!r}")
            outcomes[status] = outcomes.get(status, 0) + 1

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, outcomes, time.perf_counter() - began


async def warm_up(concurrency: int, one: Callable[[int], Awaitable[str]]) -> None:
    """WARM_UP sagas, checked like the measured ones, measured not at all."""
    await keep_in_flight(WARM_UP, concurrency, one, first=WARM_UP_FIRST)


def start_process(args: list[str], log: Path, *, env: dict[str, str] | None = None,
                  cwd: Path | None = None) -> subprocess.Popen[bytes]:
    """A server of a peer, its output in ``log``; stop it with stop_process."""
    out = open(log, "wb")  # noqa: SIM115 - held for the process's life
    return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=cwd,
                            env={**os.environ, **(env or {})}, start_new_session=True)


def stop_process(process: subprocess.Popen[bytes], timeout_s: float = 15) -> None:
    """SIGTERM to the process group, SIGKILL when it does not end in time."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, 15)
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, 9)
        process.wait(timeout_s)
    except ProcessLookupError:
        pass


def wait_until(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout_s}s")
        time.sleep(0.2)


def free_ports(base: int, count: int) -> Iterable[int]:
    return range(base, base + count)
