"""`make demo`: the order saga end to end on the embedded Kafka.

Starts the embedded broker (unless SAGA_BOOTSTRAP_SERVERS names a cluster), creates the
topics, runs one coordinator and the five example services as separate processes,
sends a few hundred orders (about a fifth of them for a sku that is out of stock),
waits until every saga has ended; then, through the client, a bulk order fanned out to
child order sagas, a subscription that continues as new each period and changes plan by
an update, and a schedule that starts subscriptions; prints a summary, rebuilds the
projection from the journal and compares checksums. Exits 1 when an invariant of
DESIGN.md §7 breaks.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from saga.cli.output import table
from saga.client import BlockingSagaClient
from saga.config import Settings
from saga.coordinator.recovery import rebuild_projection
from saga.dev.audit import (
    audit_commands,
    durations_ms,
    order_violations,
    path_violations,
    percentile,
)
from saga.dev.embedded import EmbeddedKafka
from saga.dev.stack import SERVICE_NAMES, Stack
from saga.engine.inputs import DeliverSignal, StartSaga
from saga.engine.lifecycle import SagaStatus
from saga.engine.state import SagaState
from saga.errors import UpdateRefused
from saga.examples.services import alerted_orders, read_report
from saga.kafka.topics import admin_client, create_topics, load_specs
from saga.layout import StateLayout
from saga.store.local_projections import LocalProjections
from saga.store.projection import checksum
from saga.telemetry.logs import configure_logging, quiet_kafka

# Skus of the demo's own, so stock left by other runs of the inventory service (which
# keeps its levels across restarts) cannot change the paths the demo checks; and the
# skus of the documentation's examples, for trying things by hand afterwards (--serve).
STOCK = {"demo-a": 10**9, "demo-b": 10**9, "demo-c": 10**9, "demo-rare": 0,
         "sku-1": 10**9, "sku-2": 10**9}


def say(message: str) -> None:
    print(f"[demo] {message}", file=sys.stderr, flush=True)


def make_orders(count: int, out_of_stock: float, never_picked: float, seed: int,
                run_id: str, pick_timeout_s: float) -> list[dict[str, Any]]:
    """Orders on three paths: picked in time, never picked, out of stock."""
    rng = random.Random(seed)
    orders = []
    for n in range(count):
        draw = rng.random()
        path = "out_of_stock" if draw < out_of_stock else \
            "never_picked" if draw < out_of_stock + never_picked else "picked"
        sku = "demo-rare" if path == "out_of_stock" else rng.choice(["demo-a", "demo-b",
                                                                       "demo-c"])
        orders.append({"id": f"o-{run_id}-{n:04d}", "customer": f"c-{rng.randrange(50)}",
                       "amount_cents": rng.randrange(500, 20000),
                       "items": [{"sku": sku, "qty": rng.randrange(1, 4)}],
                       "pick_timeout_s": pick_timeout_s, "path": path})
    return orders


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="saga-demo", description=__doc__)
    parser.add_argument("--orders", type=int, default=300)
    parser.add_argument("--out-of-stock", type=float, default=0.2)
    parser.add_argument("--never-picked", type=float, default=0.15)
    parser.add_argument("--pick-timeout", type=float, default=5.0,
                        help="seconds each order waits for its pick (24 h in production)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait")
    parser.add_argument("--serve", action="store_true",
                        help="afterwards keep the coordinator, the services and a `saga "
                        "server` running (Ctrl-C stops them)")
    args = parser.parse_args(argv)

    settings = Settings.from_env()
    configure_logging(settings.log_format)
    StateLayout(settings.state_dir).logs.mkdir(parents=True, exist_ok=True)
    quiet_kafka(StateLayout(settings.state_dir).logs / "demo-kafka.log")
    if not settings.bootstrap_servers:
        kafka = EmbeddedKafka(settings.state_dir, base_port=settings.kafka_port, progress=say)
        began = time.monotonic()
        state = kafka.start(1)
        say(f"embedded Kafka {state.version} at {state.bootstrap_servers} "
            f"({time.monotonic() - began:.1f}s)")
        settings = settings.with_(bootstrap_servers=state.bootstrap_servers)
    outcome = create_topics(admin_client(settings.kafka), load_specs(settings))
    say(f"topics: {sum(v == 'created' for v in outcome.values())} created, "
        f"{sum(v == 'exists' for v in outcome.values())} already there")

    stack = Stack(settings, stock=STOCK, metrics=args.serve)
    stack.start_all(coordinators=["demo-1"])
    say(f"started {len(stack.processes)} processes; logs in {stack.log_dir}")
    run_id = uuid.uuid4().hex[:6]
    orders = make_orders(args.orders, args.out_of_stock, args.never_picked, args.seed, run_id,
                         args.pick_timeout)
    ids = [str(o["id"]) for o in orders]
    paths = {path: [str(o["id"]) for o in orders if o["path"] == path]
             for path in ("picked", "never_picked", "out_of_stock")}
    try:
        began = time.monotonic()
        for order in orders:
            saga_id = str(order["id"])
            stack.send(saga_id, StartSaga("order", order))
            if order["path"] == "picked":
                stack.send(saga_id, DeliverSignal("warehouse_picked", {"by": "demo"}))
        stack.flush()
        say(f"sent {len(orders)} orders (run {run_id}): {len(paths['picked'])} picked, "
            f"{len(paths['never_picked'])} never picked (alert after {args.pick_timeout:g}s), "
            f"{len(paths['out_of_stock'])} out of stock")

        shown = [-1]

        def report(states: dict[str, SagaState]) -> None:
            done = sum(1 for i in ids if i in states and states[i].terminal)
            if done != shown[0]:
                shown[0] = done
                say(f"{done}/{len(ids)} sagas ended")

        states = stack.wait_until(lambda s: all(i in s and s[i].terminal for i in ids),
                                  args.timeout, on_poll=report)
        elapsed = time.monotonic() - began
        lived = _long_lived(settings, run_id, args.timeout)
        crashed = stack.dead()
    finally:
        if not args.serve:
            stack.stop_all()
    outcome_code = _summarise(settings, stack, ids, states, paths, elapsed, crashed, lived)
    if args.serve:
        return _serve(settings, stack, outcome_code)
    return outcome_code


def _long_lived(settings: Settings, run_id: str, timeout_s: float) -> list[str]:
    """The long-lived features through the client, as an application would use them:
    a bulk order fanned out to child order sagas, a subscription that continues as new
    each period and changes plan by an update, a schedule that starts subscriptions.
    What went wrong, if anything."""
    problems: list[str] = []
    bulk_id, sub_id, schedule_id = f"bulk-{run_id}", f"sub-{run_id}", f"signups-{run_id}"
    lines = [{"sku": "demo-rare" if n % 4 == 3 else "demo-a", "qty": 1,
              "amount_cents": 1000 + n} for n in range(8)]
    with BlockingSagaClient(settings=settings) as client:
        client.start("bulk_order", bulk_id, {"id": bulk_id, "customer": "c-1",
                                             "lines": lines})
        client.start("subscription", sub_id, {"customer": "c-2", "plan": "basic",
                                              "amount_cents": 900, "period_s": 2,
                                              "cycles": 3})
        changed = client.update(sub_id, "change_plan", {"plan": "gold", "amount_cents": 1900})
        say(f"{sub_id}: plan changed to gold from cycle {changed['from_cycle']}")
        try:
            client.update(sub_id, "change_plan", {"plan": "free", "amount_cents": 0})
            problems.append("an invalid plan change was accepted")
        except UpdateRefused as refused:
            say(f"{sub_id}: an invalid change refused ({refused.message})")
        client.create_schedule(schedule_id, cron="* * * * * */3", saga_type="subscription",
                               input={"customer": "c-3", "plan": "trial",
                                      "amount_cents": 100, "period_s": 1, "cycles": 2})
        say(f"bulk order {bulk_id} (8 lines, 2 out of stock), subscription {sub_id} "
            "(3 periods of 2 s), schedule " + schedule_id + " (a subscription every 3 s)")
        bulk = client.result(bulk_id, timeout=timeout_s)
        subscribed = client.result(sub_id, timeout=timeout_s)
        info = client.status(sub_id)
        deadline = time.monotonic() + timeout_s
        started: list[str] = []
        while time.monotonic() < deadline and len(started) < 2:
            started = client.select(id_prefix=f"{schedule_id}@", type="subscription")
            time.sleep(0.5)
        client.control_schedule(schedule_id, "delete")
        ended = [client.result(saga_id, timeout=timeout_s) for saga_id in started]
    say(f"{bulk_id}: {bulk['shipped']}/{bulk['lines']} lines shipped")
    say(f"{sub_id}: {subscribed['status']} after {subscribed['cycles']} periods in run "
        f"{info.run}, plan {info.attributes.get('plan')}")
    say(f"{schedule_id}: started {', '.join(started)}; each ended after "
        f"{[e['cycles'] for e in ended]} periods")
    if (bulk["lines"], bulk["shipped"]) != (8, 6):
        problems.append(f"bulk order: {bulk['shipped']}/{bulk['lines']} lines shipped, not 6/8")
    if (subscribed["cycles"], info.run, info.attributes.get("plan")) != (3, 2, "gold"):
        problems.append(f"subscription: {subscribed['cycles']} cycles, run {info.run}, plan "
                        f"{info.attributes.get('plan')} (expected 3, run 2, gold)")
    if len(started) < 2 or any(e["cycles"] != 2 for e in ended):
        problems.append(f"schedule: {started} started, {ended} ended")
    return problems


def _serve(settings: Settings, stack: Stack, code: int) -> int:
    """Keep the demo's processes up, with a visibility server, until Ctrl-C."""
    server = stack.start(stack.add_server("demo", port=settings.server_port).name)
    url = stack.url(server.name)
    say(f"serving until Ctrl-C: the coordinator, the services, and `saga server` at {url}")
    print(f"\nAPI: {url}/api/sagas (OpenAPI: {url}/openapi.json); from any machine: "
          f"SAGA_API_URL={url} saga list")
    print("metrics: " + " ".join(stack.metrics_url(name) for name in stack.processes))
    print(f"console: {url}/", flush=True)
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        say("stopping")
    finally:
        stack.stop_all()
    return code


def _summarise(settings: Settings, stack: Stack, ids: list[str],
               states: dict[str, SagaState], paths: dict[str, list[str]], elapsed: float,
               crashed: list[str], lived: list[str]) -> int:

    mine = {i: states[i] for i in ids if i in states}
    ledger = [e for e in read_report(settings, "payments")["entries"] if e["saga_id"] in mine]
    alerts = alerted_orders(settings)
    projections = LocalProjections(settings)
    try:
        histories = {i: projections.history(i) for i in mine}
        live = checksum(projections.states())
    finally:
        projections.close()
    audit = audit_commands(settings, SERVICE_NAMES)
    audit.commands = [c for c in audit.commands if c["saga_id"] in mine]
    with tempfile.TemporaryDirectory(prefix="saga-demo-rebuild-") as tmp:
        rebuild = rebuild_projection(settings, Path(tmp) / "projection")
    rebuilt = (rebuild["checksum"], rebuild["sagas"])

    counts = {status: sum(1 for s in mine.values() if s.status is status)
              for status in SagaStatus}
    durations = durations_ms(mine.values())
    charges = [e for e in ledger if e["type"] == "charge"]
    refunds = [e for e in ledger if e["type"] == "refund"]
    print(table(["measure", "value"], [
        ["orders sent", len(ids)],
        ["completed", counts[SagaStatus.COMPLETED]],
        ["  of which never picked (ops alerted)", sum(alerts[i] for i in ids)],
        ["compensated (out of stock)", counts[SagaStatus.COMPENSATED]],
        ["failed / cancelled / parked", counts[SagaStatus.FAILED] + counts[SagaStatus.CANCELLED]
         + counts[SagaStatus.PARKED]],
        ["not ended", len(ids) - sum(1 for s in mine.values() if s.terminal)],
        ["charges (payments ledger)", len(charges)],
        ["refunds (payments ledger)", len(refunds)],
        ["commands on the topics", len(audit.commands)],
        ["duplicate command ids", len(audit.duplicates)],
        ["saga duration p50 / p99", f"{percentile(durations, 0.5)} / "
                                    f"{percentile(durations, 0.99)} ms"],
        ["wall time (never-picked orders wait out their deadline)", f"{elapsed:.1f} s"],
        ["live checksum", f"{live[0][:16]}… ({live[1]} sagas)"],
        ["rebuilt checksum", f"{rebuilt[0][:16]}… ({rebuilt[1]} sagas)"],
    ]))
    problems = order_violations(mine, ids, audit, ledger, histories)
    problems.extend(path_violations(mine, paths["picked"], paths["never_picked"],
                                    paths["out_of_stock"], alerts))
    if rebuilt != live:
        problems.append(f"invariant 4: rebuilt checksum {rebuilt[0]} ({rebuilt[1]} sagas) != "
                        f"live {live[0]} ({live[1]} sagas)")
    problems.extend(f"a process crashed: {c}" for c in crashed)
    problems.extend(lived)
    if problems:
        print(f"\nINVARIANTS BROKEN ({len(problems)}):")
        for problem in problems[:20]:
            print(f"  - {problem}")
        if len(problems) > 20:
            print(f"  ... and {len(problems) - 20} more")
        return 1
    print("long-lived sagas: a bulk order's children, a subscription's runs and plan "
          "change, a schedule's slots all ended as they should")
    print("\nall invariants hold (1: every saga ended, 2: no command id twice, "
          "3: one refund per out-of-stock charge, none without a charge, 4: rebuild = live);"
          "\nevery path ended as it should (picked: completed, never picked: one alert then "
          "completed, out of stock: compensated)")
    print("Kafka is still running for a look around (`saga list`, `saga status ID`); "
          "`saga kafka stop` stops it.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
