"""Commands that run or talk to sagas: coordinator, services, start/signal/cancel, and
the read commands (status, history, list, rebuild, checksum, verify-replay)."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from saga.cli.output import emit_json, progress, table
from saga.cli.reads import LocalProjections
from saga.config import Settings
from saga.engine.inputs import CancelSaga, DeliverSignal, Input, StartSaga
from saga.engine.lifecycle import SagaStatus
from saga.engine.replay import check_replay
from saga.engine.workflow import WorkflowRegistry, default_registry
from saga.errors import ConfigError, NonDeterminismError, SagaError
from saga.kafka import clients
from saga.kafka.clients import partitions_of
from saga.kafka.cluster import resolve_bootstrap
from saga.kafka.journal import catch_up
from saga.kafka.messages import Messages
from saga.kafka.partitioner import partition_of
from saga.state.port import checksum, checksum_by_partition
from saga.state.rocks import RocksProjection

DEFAULT_WORKFLOWS = "services.examples.order"


def register(commands: Any) -> None:
    coordinator = commands.add_parser("coordinator", help="the saga coordinator")
    sub = coordinator.add_subparsers(dest="action", required=True, metavar="ACTION")
    run = sub.add_parser("run", help="consume saga.inbox and run sagas until stopped")
    run.add_argument("--instance-id", help="stable id of this instance (default: hostname)")
    run.add_argument("--workflows", help=f"modules to import (env SAGA_WORKFLOWS; default "
                     f"{DEFAULT_WORKFLOWS})")
    run.add_argument("--batch-size", type=int, default=500)
    run.set_defaults(handler=coordinator_run)

    service = commands.add_parser("service", help="the example services")
    sub = service.add_subparsers(dest="action", required=True, metavar="ACTION")
    srun = sub.add_parser("run", help="run one service until stopped")
    srun.add_argument("name", help="payments, inventory, shipping, notifications or ops")
    srun.add_argument("--stock", type=Path, help="inventory: JSON file of sku -> quantity")
    srun.add_argument("--module", help="import services from this module's SERVICES dict "
                      "instead of the examples")
    srun.set_defaults(handler=service_run)
    report = sub.add_parser("report", help="a service's business state (ledger, stock)")
    report.add_argument("name")
    report.add_argument("--json", action="store_true")
    report.set_defaults(handler=service_report)

    start = commands.add_parser("start", help="start a saga")
    start.add_argument("type")
    start.add_argument("--id", required=True, dest="saga_id")
    start.add_argument("--input", default="null", help="the saga's input, JSON")
    start.set_defaults(handler=saga_start)
    sig = commands.add_parser("signal", help="send a signal to a saga")
    sig.add_argument("saga_id")
    sig.add_argument("name")
    sig.add_argument("--payload", default="{}", help="JSON (default {})")
    sig.set_defaults(handler=saga_signal)
    cancel = commands.add_parser("cancel", help="cancel a saga; what it did is compensated")
    cancel.add_argument("saga_id")
    cancel.add_argument("--reason", default="cancelled by operator")
    cancel.set_defaults(handler=saga_cancel)

    status = commands.add_parser("status", help="one saga's status")
    status.add_argument("saga_id")
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=saga_status)
    history = commands.add_parser("history", help="one saga's journal, in order")
    history.add_argument("saga_id")
    history.add_argument("--json", action="store_true")
    history.set_defaults(handler=saga_history)
    listing = commands.add_parser("list", help="sagas, optionally by status")
    listing.add_argument("--status", type=str.upper, choices=[s.value for s in SagaStatus])
    listing.add_argument("--type")
    listing.add_argument("--limit", type=int, default=0, help="at most this many (0: all)")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=saga_list)
    rebuild = commands.add_parser("rebuild", help="replay saga.journal into a fresh "
                                  "projection; print its checksum")
    rebuild.add_argument("--into", type=Path, help="folder for the rebuilt projection "
                         "(default: a temporary one, removed afterwards)")
    rebuild.add_argument("--by-partition", action="store_true",
                         help="also a checksum per partition, to compare with `saga checksum "
                         "--by-partition` on each instance")
    rebuild.add_argument("--json", action="store_true")
    rebuild.set_defaults(handler=saga_rebuild)
    check = commands.add_parser("checksum", help="checksum of the live projection")
    check.add_argument("--instance", help="only this coordinator instance's projection "
                       "(default: every instance under the state folder, merged)")
    check.add_argument("--by-partition", action="store_true",
                       help="also per instance and partition, with the journal offset each "
                       "instance has read to (asks Kafka for the partition count)")
    check.add_argument("--json", action="store_true")
    check.set_defaults(handler=saga_checksum)
    timers = commands.add_parser("timers", help="pending durable timers per partition")
    timers.add_argument("--json", action="store_true")
    timers.set_defaults(handler=saga_timers)
    verify = commands.add_parser("verify-replay", help="replay every stored history against "
                                 "the current code; exit 1 if any would diverge")
    verify.add_argument("--workflows", help=f"modules to import (default {DEFAULT_WORKFLOWS})")
    verify.add_argument("--json", action="store_true")
    verify.set_defaults(handler=saga_verify_replay)


def load_workflows(spec: str | None) -> WorkflowRegistry:
    modules = spec or os.environ.get("SAGA_WORKFLOWS") or DEFAULT_WORKFLOWS
    for module in filter(None, (m.strip() for m in modules.split(","))):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigError(f"cannot import workflow module {module!r}: {exc}",
                              hint="check --workflows / SAGA_WORKFLOWS and PYTHONPATH") from exc
    return default_registry


def _bootstrapped(settings: Settings) -> Settings:
    return settings.with_(bootstrap_servers=resolve_bootstrap(settings))


# ---- processes ---------------------------------------------------------------------------
def coordinator_run(args: argparse.Namespace, settings: Settings) -> int:
    from saga.coordinator import Coordinator, CoordinatorConfig

    settings = _bootstrapped(settings)
    registry = load_workflows(args.workflows)
    config = CoordinatorConfig(batch_size=args.batch_size,
                               **({"instance_id": args.instance_id} if args.instance_id else {}))
    coordinator = Coordinator(settings, registry, config, progress=progress)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: coordinator.stop())
    stats = coordinator.run()
    progress(f"coordinator stopped: {stats}")
    return 0


def service_run(args: argparse.Namespace, settings: Settings) -> int:
    from services.examples import services

    settings = _bootstrapped(settings)
    catalogue = services.SERVICES
    if args.module:
        try:
            catalogue = importlib.import_module(args.module).SERVICES
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"cannot load services from {args.module!r}: {exc}",
                              hint="the module must define SERVICES = {name: Service}") from exc
    service = catalogue.get(args.name)
    if service is None:
        raise ConfigError(f"no service {args.name!r}",
                          hint=f"choose one of {', '.join(catalogue)}")
    if args.stock is not None:
        if args.name != "inventory":
            raise ConfigError("--stock is for the inventory service")
        services.load_stock(args.stock)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        progress(f"service {args.name} running")
        await service.run(settings, stop=stop)

    asyncio.run(main())
    return 0


def service_report(args: argparse.Namespace, settings: Settings) -> int:
    from services.examples import services

    if args.name not in services.REPORTS:
        raise ConfigError(f"no example service {args.name!r}")
    try:
        report = services.read_report(settings, args.name)
    except Exception as exc:  # rocksdict raises plain Exception when the store is missing
        raise SagaError(f"no store for service {args.name} under {settings.state_dir}",
                        hint="run the service first") from exc
    if args.json:
        emit_json(report)
    else:
        for key, value in report.items():
            if key != "entries":
                print(f"{key}: {value}")
    return 0


# ---- inputs --------------------------------------------------------------------------------
def _json_arg(raw: str, flag: str) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        example = f"""{flag} '{{"id": "o-1"}}'"""
        raise ConfigError(f"{flag} is not valid JSON: {exc}",
                          hint=f"quote it for the shell, e.g. {example}") from exc


def _send(settings: Settings, saga_id: str, value: Input) -> None:
    settings = _bootstrapped(settings)
    if not saga_id or "\x00" in saga_id:
        raise ConfigError("a saga id must be non-empty and hold no NUL byte")
    messages = Messages(max_payload_bytes=settings.max_payload_bytes)
    data = messages.encode_inbox(saga_id, value)
    producer = clients.producer(settings.bootstrap_servers)
    failures: list[str] = []
    producer.produce(settings.topic("saga.inbox"), data, saga_id.encode(),
                     on_delivery=lambda err, _msg: failures.append(str(err)) if err else None)
    left = producer.flush(30)
    if left or failures:
        raise SagaError(f"the message was not delivered: {failures or 'timed out'}",
                        hint="check the cluster with `saga kafka status`, then retry")


def saga_start(args: argparse.Namespace, settings: Settings) -> int:
    _send(settings, args.saga_id, StartSaga(args.type, _json_arg(args.input, "--input")))
    print(f"started {args.type} {args.saga_id}")
    return 0


def saga_signal(args: argparse.Namespace, settings: Settings) -> int:
    _send(settings, args.saga_id, DeliverSignal(args.name, _json_arg(args.payload, "--payload")))
    print(f"signalled {args.name} to {args.saga_id}")
    return 0


def saga_cancel(args: argparse.Namespace, settings: Settings) -> int:
    _send(settings, args.saga_id, CancelSaga(args.reason))
    print(f"asked {args.saga_id} to cancel")
    return 0


# ---- reads ---------------------------------------------------------------------------------
def saga_status(args: argparse.Namespace, settings: Settings) -> int:
    projections = LocalProjections(settings)
    try:
        state = projections.get(args.saga_id)
    finally:
        projections.close()
    if state is None:
        raise SagaError(f"no saga {args.saga_id!r} in the local projections",
                        hint="check the id with `saga list`; a saga just started may take a "
                        "moment to appear")
    summary = state.summary()
    if args.json:
        emit_json(summary)
    else:
        for key in ("saga_id", "type", "status", "result", "error", "last_error",
                    "waiting_for", "in_flight", "events"):
            print(f"{key:12} {summary[key]}")
    return 0


def saga_history(args: argparse.Namespace, settings: Settings) -> int:
    projections = LocalProjections(settings)
    try:
        entries = projections.history(args.saga_id)
    finally:
        projections.close()
    if not entries:
        raise SagaError(f"no history for saga {args.saga_id!r}", hint="check the id with "
                        "`saga list`")
    rows = [{"seq": e.seq, "at_ms": e.at_ms, "type": e.event.type_name, **e.event.to_body()}
            for e in entries]
    if args.json:
        emit_json(rows)
    else:
        for row in rows:
            details = {k: v for k, v in row.items() if k not in ("seq", "at_ms", "type")}
            print(f"{row['seq']:>4}  {row['type']:<22} "
                  f"{orjson.dumps(details).decode()[:160]}")
    return 0


def saga_list(args: argparse.Namespace, settings: Settings) -> int:
    projections = LocalProjections(settings)
    try:
        states = sorted(projections.states(), key=lambda s: s.saga_id)
    finally:
        projections.close()
    chosen = [s for s in states if (not args.status or (s.status and s.status.value ==
                                                        args.status))
              and (not args.type or s.saga_type == args.type)]
    if args.limit:
        chosen = chosen[:args.limit]
    if args.json:
        emit_json([s.summary() for s in chosen])
    else:
        print(table(["saga_id", "type", "status", "events", "error"],
                    [[s.saga_id, s.saga_type, s.status.value if s.status else "",
                      s.seq, (s.error or s.last_error)[:60]] for s in chosen]))
        print(f"{len(chosen)} saga(s)")
    return 0


def live_checksum(settings: Settings) -> tuple[str, int]:
    projections = LocalProjections(settings)
    try:
        return checksum(projections.states())
    finally:
        projections.close()


def _journal_partitions(settings: Settings) -> int:
    settings = _bootstrapped(settings)
    return len(partitions_of(settings.bootstrap_servers, settings.topic("saga.journal")))


def _by_partition(projection: RocksProjection, partitions: int) -> dict[str, dict[str, Any]]:
    """Per partition: checksum and count of its sagas, and the journal offset read to."""
    sums = checksum_by_partition(projection.states(), lambda i: partition_of(i, partitions))
    offsets = projection.journal_offsets()
    empty = checksum([])
    return {str(p): {"checksum": sums.get(p, empty)[0], "sagas": sums.get(p, empty)[1],
                     "journal_offset": offsets.get(p)}
            for p in sorted(set(sums) | set(offsets))}


def saga_checksum(args: argparse.Namespace, settings: Settings) -> int:
    projections = LocalProjections(settings, args.instance)
    try:
        digest, count = checksum(projections.states())
        instances: dict[str, dict[str, Any]] = {}
        partitions = _journal_partitions(settings) if args.by_partition else 0
        for name, projection in projections.instances.items():
            own_digest, own_count = checksum(projection.states())
            instances[name] = {"checksum": own_digest, "sagas": own_count}
            if args.by_partition:
                instances[name]["partitions"] = _by_partition(projection, partitions)
        result: dict[str, Any] = {"checksum": digest, "sagas": count, "instances": instances}
    finally:
        projections.close()
    if args.json:
        emit_json(result)
        return 0
    print(f"{digest}  ({count} sagas)")
    if args.by_partition:
        print(table(["instance", "partition", "sagas", "journal offset", "checksum"],
                    [[name, p, row["sagas"], row["journal_offset"], row["checksum"][:16]]
                     for name, instance in instances.items()
                     for p, row in instance["partitions"].items()]))
    return 0


def rebuild_projection(settings: Settings, into: Path, *, by_partition: bool = False
                       ) -> dict[str, Any]:
    """Replay the whole journal into a fresh projection at ``into``."""
    settings = _bootstrapped(settings)
    topic = settings.topic("saga.journal")
    projection = RocksProjection(into)
    try:
        partitions = partitions_of(settings.bootstrap_servers, topic)
        applied = catch_up(projection, settings.bootstrap_servers, topic, partitions,
                           Messages(max_payload_bytes=settings.max_payload_bytes),
                           on_progress=_progress_line("rebuild"))
        digest, count = checksum(projection.states())
        result: dict[str, Any] = {"checksum": digest, "sagas": count, "events": applied}
        if by_partition:
            result["partitions"] = _by_partition(projection, len(partitions))
    finally:
        projection.close()
    return result


def _progress_line(label: str) -> Any:
    """A progress reporter: redraws one line on a terminal, a line a second elsewhere."""
    last = [0.0]
    tty = sys.stderr.isatty()

    def report(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] >= (0.2 if tty else 1.0) or done == total:
            last[0] = now
            share = f" ({100 * done // total}%)" if total else ""
            line = f"{label}: {done}/{total} journal records{share}"
            print(f"\r{line}" if tty else line, end="" if tty and done != total else "\n",
                  file=sys.stderr, flush=True)

    return report


def saga_rebuild(args: argparse.Namespace, settings: Settings) -> int:
    began = time.monotonic()
    if args.into is not None:
        result = rebuild_projection(settings, args.into, by_partition=args.by_partition)
    else:
        with tempfile.TemporaryDirectory(prefix="saga-rebuild-") as tmp:
            result = rebuild_projection(settings, Path(tmp) / "projection",
                                        by_partition=args.by_partition)
    seconds = time.monotonic() - began
    result["seconds"] = round(seconds, 3)
    if args.json:
        emit_json(result)
        return 0
    print(f"{result['checksum']}  ({result['sagas']} sagas, {result['events']} events in "
          f"{seconds:.1f}s)")
    if args.by_partition:
        print(table(["partition", "sagas", "journal offset", "checksum"],
                    [[p, row["sagas"], row["journal_offset"], row["checksum"][:16]]
                     for p, row in result["partitions"].items()]))
    return 0


def saga_verify_replay(args: argparse.Namespace, settings: Settings) -> int:
    from saga.audit import fold_journal

    settings = _bootstrapped(settings)
    registry = load_workflows(args.workflows)
    states = fold_journal(settings)
    diverging = []
    for state in sorted(states.values(), key=lambda s: s.saga_id):
        try:
            check_replay(registry, state)
        except NonDeterminismError as exc:
            diverging.append({"saga_id": state.saga_id, "type": state.saga_type,
                              "status": state.status.value if state.status else None,
                              "divergence": exc.message})
    if args.json:
        emit_json({"checked": len(states), "diverging": diverging})
    else:
        for item in diverging:
            print(f"{item['saga_id']} ({item['type']}, {item['status']}): {item['divergence']}")
        print(f"{len(states)} histories replayed, {len(diverging)} would diverge")
    return 1 if diverging else 0


def saga_timers(args: argparse.Namespace, settings: Settings) -> int:
    from saga.cli.reads import timer_report

    now_ms = int(time.time() * 1000)
    partitions = timer_report(settings, now_ms)
    totals = {"pending": sum(p["pending"] for p in partitions),
              "overdue": sum(p["overdue"] for p in partitions),
              "next_due_ms": min((p["next_due_ms"] for p in partitions
                                  if p["next_due_ms"] is not None), default=None)}
    if args.json:
        emit_json({"now_ms": now_ms, **totals, "partitions": partitions})
        return 0

    def when(ms: int | None) -> str:
        if ms is None:
            return "-"
        clock = time.strftime("%H:%M:%S", time.localtime(ms / 1000))
        return f"{clock} ({(ms - now_ms) / 1000:+.1f}s)"

    print(table(["partition", "pending", "overdue", "next due"],
                [[p["partition"], p["pending"], p["overdue"], when(p["next_due_ms"])]
                 for p in partitions]))
    print(f"{totals['pending']} pending, {totals['overdue']} overdue, next due "
          f"{when(totals['next_due_ms'])}")
    return 0
