"""Several coordinators: throughput with 1, 2 and 3 instances, the step-latency spike
while a rebalance moves partitions, and catch-up time for a newly assigned partition.

On this two-core machine the instances share the cores with the broker and the load,
so the figures show the cost of coordination, not the gain of more hardware.
"""

from __future__ import annotations

import re
import time
from typing import Any

from saga.config import Settings
from saga.dev.audit import percentile, span_s
from saga.dev.stack import Stack
from saga.engine import events as ev
from saga.engine.inputs import DeliverSignal, StartSaga
from saga.store.local_projections import LocalProjections


def throughput(settings: Settings, instances: int, sagas: int, send_inputs: Any,
               wait_all: Any) -> dict[str, Any]:
    """Pre-written inputs for ``sagas`` order sagas through ``instances`` coordinators
    that have all joined the group (start-up rebalances are not what is measured)."""
    stack = Stack(settings)
    names = [stack.start(stack.add_coordinator(f"s{i}").name).name for i in range(instances)]
    deadline = time.monotonic() + 120
    while not all(re.search(r"assigned partitions \[\d", stack.log_tail(n, 200))
                  for n in names):
        if time.monotonic() > deadline:
            stack.stop_all()
            raise RuntimeError("the coordinators did not all get partitions")
        time.sleep(0.5)
    time.sleep(2)  # let the last rebalance settle
    ids = [f"n{instances}-{n:06d}" for n in range(sagas)]
    inputs = send_inputs(stack, ids)
    try:
        _, states = wait_all(stack, ids, 900)
    finally:
        stack.stop_all()
    seconds = span_s(states[i] for i in ids)
    return {"instances": instances, "sagas": sagas, "inputs": inputs,
            "seconds": round(seconds, 2), "inputs_per_s": round(inputs / seconds, 1)}


def rebalance_spike(settings: Settings, rate: int = 40, seconds: int = 30) -> dict[str, Any]:
    """Steady order sagas through two coordinators and the services; a third joins half
    way. p99 step latency before, and in the 10 s from the join."""
    stack = Stack(settings, stock={"sku-1": 10**9, "sku-rare": 0})
    stack.start_all(coordinators=["r0", "r1"])
    ids: list[str] = []
    joined_ms = 0
    try:
        time.sleep(6)
        began = time.monotonic()
        n = 0
        while time.monotonic() - began < seconds:
            saga_id = f"r-{n:06d}"
            stack.send(saga_id, StartSaga("order", {
                "id": saga_id, "customer": "c", "amount_cents": 100,
                "items": [{"sku": "sku-1", "qty": 1}]}))
            stack.send(saga_id, DeliverSignal("warehouse_picked", None))
            stack.flush()
            ids.append(saga_id)
            n += 1
            if not joined_ms and time.monotonic() - began >= seconds / 2:
                joined_ms = int(time.time() * 1000)
                stack.start(stack.add_coordinator("r2").name)
            time.sleep(1 / rate)
        deadline = time.monotonic() + 120
        while True:
            states = stack.states()
            if all(i in states and states[i].terminal for i in ids):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("sagas did not end after the rebalance")
            time.sleep(0.5)
        moved = re.findall(r"assigned partitions \[([0-9, ]+)\]",
                           stack.log_tail("coordinator-r2", 200))
    finally:
        stack.stop_all()
    before, around = [], []
    projections = LocalProjections(settings)
    try:
        for saga_id in ids:
            issued: dict[str, int] = {}
            for entry in projections.history(saga_id):
                event = entry.event
                if isinstance(event, ev.CommandIssued):
                    issued[event.command_id] = entry.at_ms
                elif isinstance(event, ev.CommandCompleted) and event.command_id in issued:
                    latency = entry.at_ms - issued[event.command_id]
                    at = issued[event.command_id]
                    if at < joined_ms:
                        before.append(latency)
                    elif at < joined_ms + 10_000:
                        around.append(latency)
    finally:
        projections.close()
    before.sort()
    around.sort()
    return {"sagas": len(ids), "rate_per_s": rate,
            "partitions_moved_to_new_instance": moved[-1] if moved else "",
            "before_ms": {"p50": percentile(before, 0.5), "p99": percentile(before, 0.99)},
            "rebalance_10s_ms": {"p50": percentile(around, 0.5),
                                 "p99": percentile(around, 0.99),
                                 "max": around[-1] if around else 0}}


def catch_up(settings: Settings, sagas: int, send_inputs: Any, wait_all: Any
             ) -> dict[str, Any]:
    """Run ``sagas`` through one coordinator, then start a fresh instance that takes every
    partition with an empty projection: its catch-up time, scaled to 100k sagas."""
    stack = Stack(settings)
    ids = [f"cu-{n:06d}" for n in range(sagas)]
    send_inputs(stack, ids)
    stack.start(stack.add_coordinator("first").name)
    try:
        wait_all(stack, ids, 900)
    finally:
        stack.stop_all()
    fresh = stack.add_coordinator("fresh")
    stack.start(fresh.name)
    try:
        deadline = time.monotonic() + 900
        while True:
            found = re.search(r"caught up (\d+) journal entries(?: \(in (\d+) worker "
                              r"processes\))? and (\d+) timer records in ([0-9.]+)s",
                              stack.log_tail(fresh.name, 50))
            if found:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("the fresh coordinator never caught up")
            time.sleep(0.5)
    finally:
        stack.stop_all()
    entries, workers, seconds = int(found[1]), int(found[2] or 1), float(found[4])
    return {"sagas": sagas, "journal_entries": entries, "workers": workers, "seconds": seconds,
            "seconds_per_100k_sagas": round(seconds * 100_000 / sagas, 1),
            "entries_per_s": round(entries / seconds, 1)}
