"""Chaos, bounded: a 3-broker cluster, 3 coordinators and the services, 5,000 orders on
all three paths, processes SIGKILLed and restarted every few seconds, one broker
restarted. Afterwards invariants 1-5 of DESIGN.md §7 hold. Loopback only; stops by
itself within five minutes."""

from __future__ import annotations

import json
import random
import signal
import time
from collections import Counter
from pathlib import Path

import pytest
from saga.examples.services import alerted_orders, read_report

from saga.config import Settings
from saga.dev.audit import (
    audit_commands,
    order_violations,
    path_violations,
    projection_violations,
)
from saga.dev.embedded import EmbeddedKafka
from saga.dev.stack import SERVICE_NAMES, Stack
from saga.engine.inputs import DeliverSignal, StartSaga
from saga.engine.lifecycle import SagaStatus
from saga.kafka.topics import admin_client, create_topics, load_specs
from saga.store.local_projections import LocalProjections
from tests.cli_helpers import run_saga
from tests.system import STOCK, order

pytestmark = pytest.mark.embedded

ORDERS = 5000
BUDGET_S = 300
COORDINATORS = ("c1", "c2", "c3")


def test_chaos(cluster: tuple[EmbeddedKafka, str], tmp_path: Path) -> None:
    kafka, bootstrap = cluster
    began = time.monotonic()
    rng = random.Random(5000)
    settings = Settings(bootstrap_servers=bootstrap, state_dir=tmp_path / "state",
                        topic_prefix="chaos.", partitions=6, replication_factor=3)
    create_topics(admin_client(settings.kafka), load_specs(settings))
    paths = {"picked": [], "never_picked": [], "out_of_stock": []}  # type: dict[str, list[str]]
    stack = Stack(settings, stock={**STOCK, "sku-1": 10**9})
    stack.start_all(COORDINATORS)
    kills: Counter[str] = Counter()
    broker_restarted = False
    try:
        for n in range(ORDERS):
            draw = rng.random()
            path = "out_of_stock" if draw < 0.2 else "never_picked" if draw < 0.35 else "picked"
            saga_id = f"o-{n:05d}"
            paths[path].append(saga_id)
            stack.send(saga_id, StartSaga("order", {
                **order(saga_id, "sku-rare" if path == "out_of_stock" else "sku-1", qty=1),
                "pick_timeout_s": 8}))
            if path == "picked":
                stack.send(saga_id, DeliverSignal("warehouse_picked", None))
        stack.flush()
        ids = [i for p in paths.values() for i in p]
        chaos_until = time.monotonic() + 60
        while time.monotonic() < chaos_until:
            time.sleep(rng.uniform(2.0, 5.0))
            victim = rng.choice([*(f"coordinator-{c}" for c in COORDINATORS),
                                 *(f"service-{s}" for s in SERVICE_NAMES)])
            stack.kill(victim, signal.SIGKILL)
            kills[victim] += 1
            if not broker_restarted and time.monotonic() > chaos_until - 40:
                kafka.kill_node(2)
                time.sleep(3)
                kafka.start(3)
                broker_restarted = True
            stack.start(victim)
        for name in stack.processes:
            stack.start(name)
        remaining = BUDGET_S - (time.monotonic() - began) - 45
        states = stack.wait_until(lambda s: all(i in s and s[i].terminal for i in ids),
                                  remaining)
        crashed = stack.dead()
    finally:
        stack.stop_all()

    ledger = read_report(settings, "payments")["entries"]
    alerts = alerted_orders(settings)
    audit = audit_commands(settings, SERVICE_NAMES)
    projections = LocalProjections(settings)
    try:
        histories = {i: projections.history(i) for i in ids}
    finally:
        projections.close()
    live = json.loads(run_saga(settings, "checksum", "--by-partition", "--json").stdout)
    rebuilt = json.loads(run_saga(settings, "rebuild", "--by-partition", "--json",
                                  timeout=240).stdout)
    per_instance = projection_violations(live, rebuilt)
    timers = json.loads(run_saga(settings, "timers", "--json").stdout)
    problems = order_violations(states, ids, audit, ledger, histories)
    problems += path_violations(states, paths["picked"], paths["never_picked"],
                                paths["out_of_stock"], alerts)
    problems += per_instance.problems
    ended = sum(1 for i in ids if i in states and states[i].terminal)
    by_status = Counter(states[i].status for i in ids if i in states)
    print(f"\nchaos: {ORDERS} orders, {sum(kills.values())} SIGKILLs {dict(kills)}, broker "
          f"restarted: {broker_restarted}; ended {ended}, completed "
          f"{by_status[SagaStatus.COMPLETED]}, compensated {by_status[SagaStatus.COMPENSATED]}, "
          f"alerts {sum(alerts.values())}, commands {len(audit.commands)}, duplicate command "
          f"ids {len(audit.duplicates)}, charges {sum(e['type'] == 'charge' for e in ledger)}, "
          f"refunds {sum(e['type'] == 'refund' for e in ledger)}, pending timers "
          f"{timers['pending']}, checksum live {live['checksum'][:12]} rebuilt "
          f"{rebuilt['checksum'][:12]}, per instance: {per_instance.compared} current "
          f"partition copies equal to the rebuild, {per_instance.stale} older copies, "
          f"{time.monotonic() - began:.0f}s")
    assert crashed == []
    assert problems == []
    assert rebuilt["checksum"] == live["checksum"]
    assert per_instance.compared >= len(rebuilt["partitions"])  # every partition checked
    assert timers["pending"] == 0  # invariant 5: every timer fired or was cancelled
    assert sum(alerts.values()) == len(paths["never_picked"])
    assert broker_restarted
    assert sum(kills.values()) >= 10
    assert time.monotonic() - began < BUDGET_S + 60
