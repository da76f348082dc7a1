"""The pure parts of `make bench`: every pace sends the same mix of orders, and a paced
phase's cost is read from /proc (no broker needed)."""

from __future__ import annotations

import os
from typing import Any

from bench import run
from bench.watch import Usage
from saga.engine.inputs import StartSaga


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
