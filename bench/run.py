"""`make bench`: throughput and latency of the saga engine on a real broker.

Every figure is measured in the same run as its baseline, so ratios hold on any machine:

* ceiling      a plain confluent-kafka transactional consume->produce loop in Python over
               the same topics and record sizes (one journal-sized and one command-sized
               record out per input, offsets in the transaction, 500 per batch)
* coordinator  inputs/s through the real coordinator process, every reply written
               ahead (command ids are deterministic): the fastest possible services
* end to end   order sagas/s with the five real service processes, all sent at once
* step latency p50/p99 from a command's decision to its reply's, from the journal, for
               sagas sent at a steady rate after the burst (aiming at 50/s; the rate
               achieved is recorded with it; a burst measures queueing)
* rebuild      journal events/s replayed into a fresh projection

The broker the bench starts runs the JVM's full JIT (C1 and C2), as a production broker
does, and every measurement follows a warm-up (``--warm-up-s``) of steady end-to-end
load on a throwaway stack: what C2 compiles then is the code a broker that has run for
days serves with. The development brokers (tests, demo, smoke) compile with C1 only,
which costs less for their minutes of life (docs/configuration.md).

Results: bench/results/<UTC time>.json and bench/results/latest.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException, TopicPartition

from bench import broker, evolution, scaling, timers, visibility, waiting
from bench.watch import JournalWatcher, Usage, process_cpu_s
from saga.config import Settings
from saga.coordinator.recovery import rebuild_projection
from saga.dev.audit import percentile, span_s
from saga.dev.stack import Stack
from saga.engine import events as ev
from saga.engine.inputs import CommandReply, DeliverSignal, ReplyOutcome, StartSaga
from saga.errors import SagaError
from saga.kafka import clients
from saga.kafka.records import RecordCodec
from saga.kafka.topics import admin_client, create_topics, load_specs
from saga.store.local_projections import LocalProjections

RESULTS = Path(__file__).parent / "results"
STOCK = {"sku-1": 10**9, "sku-rare": 0}


def say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def order(saga_id: str, rare: bool) -> dict[str, Any]:
    return {"id": saga_id, "customer": "c-1", "amount_cents": 4599,
            "items": [{"sku": "sku-rare" if rare else "sku-1", "qty": 1}]}


#: What fresh_settings made in this process, whose topics go when the run ends.
_MADE: list[Settings] = []


def fresh_settings(base: Settings, label: str) -> Settings:
    state = Path(tempfile.mkdtemp(prefix=f"saga-bench-{label}-"))
    settings = base.with_(topic_prefix=f"bench-{label}-{uuid.uuid4().hex[:6]}.", state_dir=state)
    _MADE.append(settings)
    create_topics(admin_client(settings.kafka), load_specs(settings))
    return settings


def delete_made_topics() -> None:
    """Delete the topics fresh_settings made. A broker kept between runs (the embedded
    one) otherwise keeps every run's: after a day of runs it held 12,000 open files and
    logged "Too many open files". A failure here only says so; the figures are written.
    The state folders stay, with the processes' logs."""
    while _MADE:
        settings = _MADE.pop()
        admin = admin_client(settings.kafka)
        try:
            names = [name for name in admin.list_topics(timeout=30).topics
                     if name.startswith(settings.topic_prefix)]
            for future in admin.delete_topics(names, operation_timeout=30).values() \
                    if names else ():
                future.result(60)
        except KafkaException as exc:
            say(f"the topics {settings.topic_prefix}* were not deleted: {exc}")


def send_orders(stack: Stack, count: int, prefix: str, first: int = 0) -> list[str]:
    """``count`` order sagas, each with its warehouse signal. Every fifth order, counted
    from ``first`` (the orders a paced phase sent before), asks for a sku that is out of
    stock, so its saga is compensated: the same mix in a burst and at any pace."""
    ids = [f"{prefix}-{n:06d}" for n in range(count)]
    for n, saga_id in enumerate(ids, start=first):
        stack.send(saga_id, StartSaga("order", order(saga_id, rare=n % 5 == 0)))
        stack.send(saga_id, DeliverSignal("warehouse_picked", None))
    stack.flush()
    return ids


def wait_all(stack: Stack, ids: list[str], timeout_s: float) -> tuple[float, dict[str, Any]]:
    began = time.monotonic()
    last = -1
    while True:
        states = stack.states()
        done = sum(1 for i in ids if i in states and states[i].terminal)
        if done != last:
            last = done
            say(f"  {done}/{len(ids)} sagas ended")
        if done == len(ids):
            return time.monotonic() - began, states
        if time.monotonic() - began > timeout_s:
            raise RuntimeError(f"only {done}/{len(ids)} sagas ended in {timeout_s}s:\n"
                               + "\n".join(stack.dead()))
        time.sleep(0.25)


# ---- the ceiling ---------------------------------------------------------------------------
def ceiling(base: Settings, count: int) -> dict[str, Any]:
    """Inputs/s of a bare transactional consume->produce loop over the same topics."""
    settings = fresh_settings(base, "ceiling")
    messages = RecordCodec()
    inbox, journal = settings.topic("saga.inbox"), settings.topic("saga.journal")
    commands = settings.topic("payments.commands")
    reserve = ev.CommandIssued(1, "o-000001:1:1", "inventory", "reserve",
                               ev.CommandKind.ACTION, 1, order("o-000001", False),
                               ("inventory", "release"))
    sample_entry = messages.encode_entry(ev.Entry("o-000001", 3, 0, reserve))
    sample_command = messages.encode_command("o-000001", "order", reserve, inbox, 0)
    producer = clients.producer(settings.kafka)
    for n in range(count):
        saga_id = f"o-{n:06d}"
        producer.produce(inbox, messages.encode_inbox(saga_id, CommandReply(
            f"{saga_id}:0:1", "payments", ReplyOutcome.OK,
            {"charge_id": "ch-1", "amount_cents": 4599}, "")), saga_id.encode())
        if n % 10000 == 0:
            producer.poll(0)
    producer.flush(60)
    loop_producer = clients.producer(settings.kafka,
                                     transactional_id=f"{settings.topic_prefix}ceiling")
    loop_producer.init_transactions(60)
    consumer = clients.consumer(settings.kafka, f"{settings.topic_prefix}ceiling")
    consumer.subscribe([inbox])
    done = 0
    began = None
    while done < count:
        batch = consumer.consume(500, 1.0)
        if not batch:
            continue
        began = began or time.monotonic()
        loop_producer.begin_transaction()
        offsets: dict[int, int] = {}
        for message in batch:
            if message.error() is not None:
                continue
            _, partition, offset = clients.where(message)
            key = message.key()
            loop_producer.produce(journal, sample_entry, key, partition=partition)
            loop_producer.produce(commands, sample_command, key)
            offsets[partition] = offset + 1
            done += 1
        loop_producer.send_offsets_to_transaction(
            [TopicPartition(inbox, p, o) for p, o in offsets.items()],
            consumer.consumer_group_metadata(), 30)
        loop_producer.commit_transaction(60)
    seconds = time.monotonic() - (began or time.monotonic())
    consumer.close()
    return {"inputs": count, "seconds": round(seconds, 3),
            "inputs_per_s": round(count / seconds, 1)}


# ---- the coordinator alone -------------------------------------------------------------------
def pregenerated_inputs(saga_id: str, rare: bool) -> list[Any]:
    """Every input one order saga will consume, in order. Command ids are deterministic,
    so the replies can be written before the commands exist: the fastest possible
    "services", leaving the coordinator as the only moving part."""
    ok = {"charge_id": "ch-1", "amount_cents": 4599}
    inputs: list[Any] = [StartSaga("order", order(saga_id, rare)),
                         CommandReply(f"{saga_id}:0:1", "payments", ReplyOutcome.OK, ok, "")]
    if rare:
        return [*inputs,
                CommandReply(f"{saga_id}:1:1", "inventory", ReplyOutcome.BUSINESS_ERROR, None,
                             "out_of_stock"),
                CommandReply(f"{saga_id}:0c:1", "payments", ReplyOutcome.OK, {"refunded": 1}, "")]
    return [*inputs,
            CommandReply(f"{saga_id}:1:1", "inventory", ReplyOutcome.OK, {"reservation": "r"}, ""),
            DeliverSignal("warehouse_picked", None),
            CommandReply(f"{saga_id}:3:1", "shipping", ReplyOutcome.OK, {"id": "trk-1"}, ""),
            CommandReply(f"{saga_id}:4:1", "notifications", ReplyOutcome.OK, {"sent": True}, "")]


def send_pregenerated(stack: Stack, ids: list[str]) -> int:
    """Write every input of ``ids`` (a fifth out of stock) to the inbox; how many."""
    inputs = 0
    for n, saga_id in enumerate(ids):
        for value in pregenerated_inputs(saga_id, rare=n % 5 == 0):
            stack.send(saga_id, value)
            inputs += 1
    stack.flush()
    return inputs


def coordinator_only(base: Settings, count: int) -> dict[str, Any]:
    settings = fresh_settings(base, "coordinator")
    stack = Stack(settings, stock=STOCK)
    ids = [f"k-{n:06d}" for n in range(count)]
    inputs = send_pregenerated(stack, ids)
    watcher = JournalWatcher(settings)
    process = stack.start(stack.add_coordinator("bench").name)
    try:
        watcher.wait_started(ids[:1], 120)
        pid = process.popen.pid if process.popen else 0
        cpu_began = process_cpu_s(pid)
        watcher.wait_ended(ids, 600, say)
        cpu = process_cpu_s(pid) - cpu_began
        states = stack.states()
    finally:
        stack.stop_all()
        watcher.close()
    # Timed from the journal: first decision to last, start-up excluded.
    seconds = span_s(states[i] for i in ids)
    return {"sagas": count, "inputs": inputs, "seconds": round(seconds, 3),
            "inputs_per_s": round(inputs / seconds, 1),
            "sagas_per_s": round(count / seconds, 1),
            "cpu_us_per_saga": round(cpu / count * 1e6)}


# ---- end to end ----------------------------------------------------------------------------
def end_to_end(base: Settings, count: int, paced_s: float = 5.0, light_s: float = 10.0,
               broker_pid: int | None = None, curve: tuple[float, ...] = ()
               ) -> tuple[dict[str, Any], Settings]:
    """All ``count`` sagas sent at once (throughput, and the CPU each process spent per
    saga, the broker's too when ``broker_pid`` is known), then, for ``paced_s`` seconds,
    sagas at a steady half of that throughput (step latency at half the maximum, the load
    a service is provisioned for), then for ``light_s`` seconds at 10 sagas/s (the step
    latency of a machine with room to spare: the floor of the transactions), and as long
    at each rate of ``curve`` (step latency against load)."""
    settings = fresh_settings(base, "e2e")
    stack = Stack(settings, stock=STOCK)
    stack.start_all(coordinators=["bench"])
    # The watcher reads journal headers only: polling the projections, as this did
    # before, took a fifth of the machine away from the system under test.
    watcher = JournalWatcher(settings)
    try:
        time.sleep(5)
        pids = {name: p.popen.pid for name, p in stack.processes.items() if p.popen}
        if broker_pid:
            pids["kafka-broker"] = broker_pid
        burst_usage = Usage(pids)
        ids = send_orders(stack, count, "e")
        watcher.wait_ended(ids, 900, say)
        burst_cost = burst_usage.spent(count)
        seconds = (max(watcher.ended[i] for i in ids)
                   - min(watcher.started[i] for i in ids)) / 1000
        paced_rate = max(1.0, count / seconds / 2)
        # What each paced phase cost, sending and draining: at a steady rate the batches
        # are small, so a saga costs more than in the burst, and how busy the machine
        # was says whether its steps queue for a core.
        usage = Usage(pids)
        paced, achieved = _paced(stack, paced_rate, paced_s, "p")
        watcher.wait_ended(paced, 120)
        paced_cost = usage.spent(len(paced))
        usage = Usage(pids)
        light, light_achieved = _paced(stack, LIGHT_RATE, light_s, "l") if light_s \
            else ([], 0.0)
        watcher.wait_ended(light, 120)
        light_cost = usage.spent(len(light))
        by_rate = []
        for n, rate in enumerate(curve):
            usage = Usage(pids)
            sent, got = _paced(stack, rate, light_s, f"c{n}")
            watcher.wait_ended(sent, 300)
            by_rate.append((rate, sent, got, usage.spent(len(sent))))
    finally:
        stack.stop_all()
        watcher.close()
    projections = LocalProjections(settings)
    try:
        latencies = step_latencies(projections.history(i) for i in paced)
        quiet = step_latencies(projections.history(i) for i in light)
        latency_curve = [{"target_rate_per_s": rate, "rate_per_s": round(got, 1),
                          **_summary(step_latencies(projections.history(i) for i in sent)),
                          **cost}
                         for rate, sent, got, cost in by_rate]
        burst = step_latencies(projections.history(i) for i in ids)
        entries = sum(len(projections.history(i)) for i in ids[:100])
    finally:
        projections.close()
    return {"sagas": count, "seconds": round(seconds, 3),
            "sagas_per_s": round(count / seconds, 1),
            "journal_entries_per_saga": round(entries / min(100, count), 1),
            "cpu_us_per_saga": burst_cost["cpu_us_per_saga"],
            "step_latency_ms": {**_summary(latencies),
                                "target_rate_per_s": round(paced_rate, 1),
                                "rate_per_s": round(achieved, 1), **paced_cost},
            "light_step_latency_ms": {**_summary(quiet), "target_rate_per_s": LIGHT_RATE,
                                      "rate_per_s": round(light_achieved, 1), **light_cost},
            "step_latency_by_rate_ms": latency_curve,
            "burst_step_latency_ms": {"p50": percentile(burst, 0.5),
                                      "p99": percentile(burst, 0.99),
                                      "histogram": histogram(burst)}}, settings


#: Sagas per second of the light-load phase.
LIGHT_RATE = 10.0
#: Sagas per second of the warm-up's steady load, and the burst that ends it.
WARM_UP_RATE, WARM_UP_BURST = 50.0, 1000


def warm_up(base: Settings, seconds: float) -> dict[str, Any]:
    """Steady end-to-end load for ``seconds``, then a burst, on a stack of its own, so the
    broker's JIT has compiled the paths the measurements take (transactions of a few
    records as much as large batches); nothing of it is measured. The caller reports
    the CPU the broker's compiler threads spent meanwhile, to show they have settled."""
    settings = fresh_settings(base, "warm")
    stack = Stack(settings, stock=STOCK)
    stack.start_all(coordinators=["bench"])
    watcher = JournalWatcher(settings)
    try:
        sent, got = _paced(stack, WARM_UP_RATE, seconds, "w")
        watcher.wait_ended(sent, 300)
        burst = send_orders(stack, WARM_UP_BURST, "wb")
        watcher.wait_ended(burst, 300)
    finally:
        stack.stop_all()
        watcher.close()
    return {"seconds": seconds, "paced_sagas": len(sent), "rate_per_s": round(got, 1),
            "burst_sagas": len(burst)}


def _paced(stack: Stack, rate: float, seconds: float, prefix: str) -> tuple[list[str], float]:
    """Orders sent at ``rate`` per second for ``seconds`` (a batch every 20 ms); their
    ids and the rate achieved."""
    sent: list[str] = []
    began = time.monotonic()
    tick = 0
    while time.monotonic() - began < seconds:
        tick += 1
        due = int(rate * 0.02 * tick) - len(sent)
        if due > 0:
            sent.extend(send_orders(stack, due, f"{prefix}{tick:04d}", first=len(sent)))
        time.sleep(max(0.0, began + tick * 0.02 - time.monotonic()))
    return sent, len(sent) / (time.monotonic() - began)


def _summary(latencies: list[int]) -> dict[str, Any]:
    return {"p50": percentile(latencies, 0.5), "p90": percentile(latencies, 0.9),
            "p99": percentile(latencies, 0.99),
            "max": latencies[-1] if latencies else None, "samples": len(latencies),
            "histogram": histogram(latencies)}


#: Upper bounds (ms) of the step latency histogram's buckets; the last is open.
LATENCY_BUCKETS_MS = (5, 10, 20, 30, 40, 50, 75, 100, 150, 200, 300, 500, 1000, 2000, 5000)


def histogram(latencies: list[int]) -> dict[str, int]:
    """Counts per bucket, keyed "le_<bound>" (and "gt_<last>"), every bucket shown."""
    counts = {f"le_{bound}": 0 for bound in LATENCY_BUCKETS_MS}
    counts[f"gt_{LATENCY_BUCKETS_MS[-1]}"] = 0
    for value in latencies:
        bound = next((b for b in LATENCY_BUCKETS_MS if value <= b), None)
        counts[f"le_{bound}" if bound is not None else f"gt_{LATENCY_BUCKETS_MS[-1]}"] += 1
    return counts


def step_latencies(histories: Any) -> list[int]:
    out = []
    for history in histories:
        issued: dict[str, int] = {}
        for entry in history:
            event = entry.event
            if isinstance(event, ev.CommandIssued):
                issued[event.command_id] = entry.at_ms
            elif isinstance(event, ev.CommandCompleted | ev.CommandFailed) and \
                    event.command_id in issued:
                out.append(entry.at_ms - issued[event.command_id])
    return sorted(out)


def rebuild(settings: Settings) -> dict[str, Any]:
    """The rebuild's rate in one process and in one worker process per core, and their
    baseline in the same run: the same journal read to its end by the same client with
    nothing decoded (what bounds any rebuild here)."""
    topic = settings.topic("saga.journal")
    began = time.monotonic()
    records = sum(1 for item in clients.read_to_end(
        settings.kafka, topic, dict.fromkeys(clients.partitions_of(settings.kafka, topic)))
        if not isinstance(item, clients.EndOfPartition))
    read_s = time.monotonic() - began
    bare = records / read_s
    runs = {}
    for workers in (1, len(os.sched_getaffinity(0))):
        with tempfile.TemporaryDirectory(prefix="saga-bench-rebuild-") as tmp:
            began = time.monotonic()
            rebuilt = rebuild_projection(settings, Path(tmp) / "projection", workers=workers)
            seconds = time.monotonic() - began
        runs[workers] = (rebuilt, seconds)
    (one, one_s), (apart, apart_s) = runs[1], runs[max(runs)]
    assert apart["checksum"] == one["checksum"], "a parallel rebuild differs from a serial one"
    return {"sagas": one["sagas"], "events": one["events"], "seconds": round(one_s, 3),
            "events_per_s": round(one["events"] / one_s, 1),
            "bare_read_records_per_s": round(bare, 1),
            "vs_bare_read": round((one["events"] / one_s) / bare, 3),
            "parallel": {"workers": apart["workers"], "seconds": round(apart_s, 3),
                         "events_per_s": round(apart["events"] / apart_s, 1),
                         "vs_bare_read": round((apart["events"] / apart_s) / bare, 3)}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__)
    parser.add_argument("--sagas", type=int, default=5000)
    parser.add_argument("--ceiling-inputs", type=int, default=50000)
    parser.add_argument("--scaling", action=argparse.BooleanOptionalAction, default=True,
                        help="run the several-coordinators part")
    parser.add_argument("--catch-up-sagas", type=int, default=20000)
    parser.add_argument("--timers", default="10000,100000,1000000",
                        help="pending-timer counts for the lateness runs ('' skips them)")
    parser.add_argument("--visibility-sagas", type=int, default=5000,
                        help="sagas sent at 500/s for the visibility lag (0 skips it)")
    parser.add_argument("--long-lived", action=argparse.BooleanOptionalAction, default=True,
                        help="run continue-as-new's replay and the 1,000-children fan-out")
    parser.add_argument("--latency-rates", default="50,100,150",
                        help="sagas/s at which the step latency is measured for 10 s each, "
                        "after the half-maximum and 10/s runs ('' skips them)")
    parser.add_argument("--warm-up-s", type=float, default=90.0,
                        help=f"seconds of steady load at {WARM_UP_RATE:g} sagas/s (and a "
                        f"burst of {WARM_UP_BURST}) before anything is measured, so the "
                        "broker's JIT has compiled what it serves (0 skips it)")
    parser.add_argument("--waiting", type=int, default=1_000_000,
                        help="sagas left waiting, for the coordinator's memory per waiting "
                        "saga (0 skips it)")
    args = parser.parse_args(argv)
    base = Settings.from_env()
    broker_pid: int | None = None  # its CPU is counted only when the broker is ours
    measured_on: dict[str, Any] = {"ours": not base.bootstrap_servers}
    if not base.bootstrap_servers:
        state = broker.start(base.state_dir, base.kafka_port, say)
        base = base.with_(bootstrap_servers=state.bootstrap_servers)
        broker_pid = state.nodes[0].pid
        measured_on["jvm_opts"] = broker.describe(state.nodes[0].jvm_opts)
    if args.warm_up_s:
        say(f"warm-up: {args.warm_up_s:g} s at {WARM_UP_RATE:g} sagas/s, then "
            f"{WARM_UP_BURST} at once (not measured)")
        jit_before = broker.jit_cpu_s(broker_pid)
        measured_on["warm_up"] = {**warm_up(base, args.warm_up_s), "broker_jit_cpu_s": round(
            broker.jit_cpu_s(broker_pid) - jit_before, 2)}
        say(f"  {measured_on['warm_up']}")
    say(f"ceiling: {args.ceiling_inputs} inputs through a bare transactional loop")
    first = ceiling(base, args.ceiling_inputs)
    say(f"  {first}")
    say(f"coordinator only: {args.sagas} order sagas, replies written ahead")
    coord = coordinator_only(base, args.sagas)
    say(f"  {coord}")
    say(f"end to end: {args.sagas} order sagas with the five service processes")
    curve = tuple(float(r) for r in args.latency_rates.split(",") if r.strip())
    e2e, e2e_settings = end_to_end(base, args.sagas, broker_pid=broker_pid, curve=curve)
    say(f"  {e2e}")
    say("rebuild of the end-to-end journal")
    rebuilt = rebuild(e2e_settings)
    say(f"  {rebuilt}")
    # The broker warms up over a run: measure the ceiling again and hold the coordinator
    # to the better of the two (the conservative baseline).
    say("ceiling again, after the broker has warmed up")
    last = ceiling(base, args.ceiling_inputs)
    say(f"  {last}")
    top = {"inputs": first["inputs"],
           "inputs_per_s": max(first["inputs_per_s"], last["inputs_per_s"]),
           "runs_inputs_per_s": [first["inputs_per_s"], last["inputs_per_s"]]}
    wheel = []
    for pending in timers.main_sizes(args.timers):
        say(f"timer wheel: lateness of 1000 probe timers with {pending} pending")
        wheel.append(timers.lateness_with_pending(fresh_settings(base, "wheel"), pending))
        say(f"  {wheel[-1]}")
    downtime: dict[str, Any] = {}
    if args.timers:
        say("timer wheel: catching up after 60 s without a coordinator (1000 timers/s)")
        downtime = timers.catch_up_after_downtime(fresh_settings(base, "downtime"))
        say(f"  {downtime}")
    seen: dict[str, Any] = {}
    if args.visibility_sagas:
        say(f"visibility: {args.visibility_sagas} sagas at 500/s, lag to the API; reads")
        seen = visibility.lag_and_reads(fresh_settings(base, "visibility"), order,
                                        args.visibility_sagas)
        say(f"  {seen}")
    lived: dict[str, Any] = {}
    if args.long_lived:
        say("long-lived: continue-as-new replay and storage, against one long run")
        lived["continue_as_new"] = evolution.continue_as_new(say)
        say(f"  {lived['continue_as_new']['ratios']}")
        say("long-lived: a parent with 1,000 children, against 1,000 sagas started directly")
        lived["fan_out"] = evolution.fan_out(fresh_settings(base, "fanout"))
        say(f"  {lived['fan_out']}")
    memory: dict[str, Any] = {}
    if args.waiting:
        say(f"memory: {args.waiting} sagas left waiting on one coordinator")
        memory = waiting.memory_per_waiting_saga(fresh_settings(base, "waiting"),
                                                 args.waiting, say)
        say(f"  {memory}")
    several: dict[str, Any] = {}
    if args.scaling:
        runs = []
        for instances in (1, 2, 3):
            say(f"scaling: {args.sagas} sagas through {instances} coordinator(s)")
            runs.append(scaling.throughput(fresh_settings(base, f"scale{instances}"),
                                           instances, args.sagas, send_pregenerated,
                                           wait_all))
            say(f"  {runs[-1]}")
        say("scaling: step latency while a third coordinator joins two")
        spike = scaling.rebalance_spike(fresh_settings(base, "rebalance"))
        say(f"  {spike}")
        say(f"scaling: catch-up of a fresh instance after {args.catch_up_sagas} sagas")
        caught = scaling.catch_up(fresh_settings(base, "catchup"), args.catch_up_sagas,
                                  send_pregenerated, wait_all)
        say(f"  {caught}")
        several = {"throughput": runs, "rebalance": spike, "catch_up": caught}
    result = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "make bench" + (f" BENCH_ARGS={shlex.quote(shlex.join(argv))}" if argv
                                   else ""),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "commit": _commit(),
        "broker": measured_on,
        "ceiling": top, "coordinator": coord, "end_to_end": e2e, "rebuild": rebuilt,
        "timer_wheel": wheel, "timer_catch_up": downtime, "scaling": several,
        "visibility": seen, "long_lived": lived, "waiting_memory": memory,
        "ratios": {
            "coordinator_vs_ceiling": round(coord["inputs_per_s"] / top["inputs_per_s"], 3),
            "end_to_end_inputs_vs_ceiling": round(
                e2e["sagas_per_s"] * coord["inputs"] / coord["sagas"] / top["inputs_per_s"], 3),
        },
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (RESULTS / f"{stamp}.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "latest.md").write_text(render(result))
    print(render(result))
    return 0


def _commit() -> str:
    import subprocess

    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, check=False, cwd=Path(__file__).parent)
    return done.stdout.strip() or "unknown"


def render(result: dict[str, Any]) -> str:
    c, k, e, r = (result["ceiling"], result["coordinator"], result["end_to_end"],
                  result["rebuild"])
    return "\n".join([
        f"# Benchmark {result['when']} (`{result['command']}`, "
        f"{result['machine']['cpus']} cores)", "", *_render_broker(result),
        "| measure | value | vs ceiling |", "|---|---|---|",
        f"| ceiling: bare transactional loop (best of {c['runs_inputs_per_s']}) | "
        f"{c['inputs_per_s']} inputs/s | 1.00 |",
        f"| coordinator, replies written ahead | {k['inputs_per_s']} inputs/s "
        f"({k['sagas_per_s']} sagas/s) | {result['ratios']['coordinator_vs_ceiling']:.2f} |",
        f"| end to end, 5 service processes | {e['sagas_per_s']} order sagas/s | "
        f"{result['ratios']['end_to_end_inputs_vs_ceiling']:.2f} (in inputs) |",
        f"| step latency p50 / p99, steady {e['step_latency_ms']['rate_per_s']} sagas/s "
        f"(achieved) | {e['step_latency_ms']['p50']} / "
        f"{e['step_latency_ms']['p99']} ms | {_cost(e['step_latency_ms'])} |",
        *_render_light(e),
        f"| step latency p50 / p99, in the burst | {e['burst_step_latency_ms']['p50']} / "
        f"{e['burst_step_latency_ms']['p99']} ms | |",
        f"| rebuild, one process | {r['events_per_s']} events/s ({r['events']} events) | "
        f"{r['vs_bare_read']:.2f} of the bare read of the journal "
        f"({r['bare_read_records_per_s']} records/s) |",
        *_render_parallel_rebuild(r),
        *_render_waiting(result), "",
        *_render_timers(result), "", *_render_scaling(result), "",
        *_render_visibility(result), "", *_render_long_lived(result), ""]).replace(
            "\n\n\n", "\n\n")


def _render_broker(result: dict[str, Any]) -> list[str]:
    used = result.get("broker")
    if not used:  # results written before the bench said which broker it measured on
        return []
    which = (f"started by the bench, JIT options: {used['jvm_opts']}" if used["ours"]
             else "given by SAGA_BOOTSTRAP_SERVERS")
    said = [f"Broker: {which}."]
    warm = used.get("warm_up")
    if warm:
        said.append(f"Warm-up (not measured): {warm['paced_sagas']} sagas in "
                    f"{warm['seconds']:g} s, then {warm['burst_sagas']} at once; the "
                    f"broker's JIT compilers used {warm['broker_jit_cpu_s']} CPU s.")
    return [" ".join(said), ""]


def _render_parallel_rebuild(r: dict[str, Any]) -> list[str]:
    parallel = r.get("parallel")
    if not parallel:  # results written before the rebuild had workers
        return []
    return [f"| rebuild, {parallel['workers']} worker processes | "
            f"{parallel['events_per_s']} events/s | {parallel['vs_bare_read']:.2f} of the "
            "bare read |"]


def _render_light(e: dict[str, Any]) -> list[str]:
    runs = [e.get("light_step_latency_ms"), *e.get("step_latency_by_rate_ms", [])]
    return [f"| step latency p50 / p99, steady {run['rate_per_s']} sagas/s (achieved) | "
            f"{run['p50']} / {run['p99']} ms | {_cost(run)} |"
            for run in runs if run and run["samples"]]


def _cost(run: dict[str, Any]) -> str:
    """A paced phase's cost beside its latency: how busy the machine was, and what the
    broker and the coordinator spent per saga (absent from results written before)."""
    if "machine_busy" not in run:
        return ""
    cpu = run["cpu_us_per_saga"]
    spent = "; ".join(f"{name} {cpu[name]:,} µs/saga"
                      for name in ("kafka-broker", "coordinator-bench") if name in cpu)
    return f"machine {run['machine_busy']:.0%} busy; {spent}"


def _render_waiting(result: dict[str, Any]) -> list[str]:
    memory = result.get("waiting_memory")
    if not memory:
        return []
    return [f"| coordinator memory per waiting saga, {memory['waiting']:,} waiting | "
            f"{memory['rss_bytes_per_waiting_saga']} bytes (RSS "
            f"{memory['baseline_rss_mb']} -> {memory['samples'][-1]['rss_mb']} MB) | |"]


def _render_visibility(result: dict[str, Any]) -> list[str]:
    seen = result.get("visibility")
    if not seen:
        return []
    api, journal, reads = seen["api_lag_ms"], seen["journal_lag_ms"], seen["reads"]
    lines = [f"Visibility ({seen['sagas']} sagas aimed at {seen['aimed_per_s']}/s, achieved "
             f"{seen['achieved_per_s']}/s; {seen['seen']} of {seen['probes']} probes): lag "
             f"from the SagaCompleted decision to GET /api/sagas/{{id}} p50/p99 "
             f"{api['p50']}/{api['p99']} ms (max {api['max']}); to a plain journal consumer "
             f"{journal['p50']}/{journal['p99']} ms."]
    after = seen.get("after_journal_consumer_ms")
    if after:
        lines[0] += (f" Per saga, from the plain consumer having it to the API showing it "
                     f"(what the index adds): p50/p99 {after['p50']}/{after['p99']} ms.")
    if "get_saga_per_s" in reads:
        lines += ["", f"Reads ({reads['tool']}): GET /api/sagas/{{id}} "
                  f"{reads['get_saga_per_s']}/s ({reads['get_saga_latency']}); GET /healthz "
                  f"{reads['healthz_per_s']}/s: {reads['vs_healthz']} of it."]
    return lines


def _render_long_lived(result: dict[str, Any]) -> list[str]:
    lived = result.get("long_lived")
    if not lived:
        return []
    can = lived["continue_as_new"]
    single = {r["loops"]: r for r in can["single_run"]}
    lines = ["| loops (sleep, charge) | continue-as-new: replay / held | one run: replay / "
             "held |", "|---|---|---|"]
    for r in can["continued"]:
        one = single.get(r["loops"])
        lines.append(f"| {r['loops']:,} | {r['replay_ms']} ms / {r['entries_held']} entries, "
                     f"{r['bytes_held']:,} B | " + (f"{one['replay_ms']} ms / "
                                                     f"{one['entries_held']:,} entries, "
                                                     f"{one['bytes_held']:,} B |"
                                                     if one else "- |"))
    ratios = can["ratios"]
    lines += ["", f"Continue-as-new: replay at the last checkpoint vs the first "
              f"{ratios['continued_replay_last_vs_first']}, bytes held "
              f"{ratios['continued_bytes_last_vs_first']}; one run: replay "
              f"{ratios['single_replay_last_vs_first']}."]
    fan = lived.get("fan_out")
    if fan:
        direct, children = fan["direct"], fan["children"]
        lines += ["", f"Fan-out: {children['sagas']} children of one parent in "
                  f"{children['seconds']} s ({children['sagas_per_s']}/s, coordinator peak "
                  f"{children['coordinator_peak_rss_mb']} MB) vs the same sagas started "
                  f"directly in {direct['seconds']} s ({direct['sagas_per_s']}/s, peak "
                  f"{direct['coordinator_peak_rss_mb']} MB): time "
                  f"{fan['ratios']['children_vs_direct_time']}, memory "
                  f"{fan['ratios']['children_vs_direct_peak_rss']}."]
    return lines


def _render_scaling(result: dict[str, Any]) -> list[str]:
    several = result.get("scaling")
    if not several:
        return []
    one = several["throughput"][0]["inputs_per_s"]
    lines = ["| coordinators | inputs/s | vs one |", "|---|---|---|"]
    lines += [f"| {r['instances']} | {r['inputs_per_s']} | {r['inputs_per_s'] / one:.2f} |"
              for r in several["throughput"]]
    spike, caught = several["rebalance"], several["catch_up"]
    lines += ["", f"Rebalance (a third coordinator joins two, {spike['rate_per_s']} sagas/s): "
              f"step latency p50/p99 {spike['before_ms']['p50']}/{spike['before_ms']['p99']} ms "
              f"before, {spike['rebalance_10s_ms']['p50']}/{spike['rebalance_10s_ms']['p99']} ms "
              f"(max {spike['rebalance_10s_ms']['max']}) in the 10 s from the join.",
              "", f"Catch-up of a fresh instance: {caught['journal_entries']} journal entries of "
              f"{caught['sagas']} sagas in {caught['seconds']} s ({caught['entries_per_s']} "
              f"entries/s, {caught.get('workers', 1)} process(es)): "
              f"{caught['seconds_per_100k_sagas']} s per 100k sagas."]
    return lines


def _render_timers(result: dict[str, Any]) -> list[str]:
    if not result["timer_wheel"]:
        return []
    lines = ["| pending timers | index catch-up | lateness at wake-up p50 / p99 / max | "
             "coordinator RSS "
             "| index on disk |", "|---|---|---|---|---|"]
    for w in result["timer_wheel"]:
        late = w["lateness_ms"]
        lines.append(f"| {w['pending']:,} | {w['catch_up_s']} s | {late['p50']} / "
                     f"{late['p99']} / {late['max']} ms | {w['coordinator_rss_mb']} MB | "
                     f"{w['index_on_disk_mb']} MB |")
    down = result["timer_catch_up"]
    if down:
        lines += ["", f"After 60 s without a coordinator, {down['overdue_timers']:,} overdue "
                  f"timers fired in {down['seconds']} s ({down['fired_per_s']} timers/s)."]
    return lines


if __name__ == "__main__":
    try:
        code = main(sys.argv[1:])
    except SagaError as exc:  # a setting or the machine: what to do, not a traceback
        print(f"bench: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"  hint: {exc.hint}", file=sys.stderr)
        code = 2
    finally:
        delete_made_topics()
    sys.exit(code)
