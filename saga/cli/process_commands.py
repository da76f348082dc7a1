"""`saga coordinator run` and `saga service run|report`: the long-running processes."""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import signal
import socket
from pathlib import Path
from typing import Any

from saga.cli.common import bootstrapped, load_workflows
from saga.cli.output import emit_json, progress
from saga.config import Settings
from saga.errors import ConfigError
from saga.telemetry import tracing
from saga.telemetry.logs import set_process_context


def register(commands: Any) -> None:
    coordinator = commands.add_parser("coordinator", help="the saga coordinator")
    sub = coordinator.add_subparsers(dest="action", required=True, metavar="ACTION")
    run = sub.add_parser("run", help="consume saga.inbox and run sagas until stopped")
    run.add_argument("--instance-id", help="stable id of this instance (default: hostname)")
    run.add_argument("--workflows", help="modules to import (env SAGA_WORKFLOWS; default: "
                     "the examples, order, subscription and bulk_order)")
    run.add_argument("--batch-size", type=int, default=500)
    run.add_argument("--metrics-port", type=int, help="serve Prometheus /metrics on this "
                     "port (env SAGA_METRICS_PORT; default: not served)")
    run.set_defaults(handler=coordinator_run)

    server = commands.add_parser("server", help="the visibility service: its own index of "
                                 "every saga, and the HTTP API")
    server.add_argument("--host", help="address to listen on (env SAGA_SERVER_HOST; "
                        "default 127.0.0.1)")
    server.add_argument("--port", type=int, help="port (env SAGA_SERVER_PORT; default 8090)")
    server.add_argument("--instance-id", help="stable id of this replica, naming its index "
                        "(default: hostname)")
    server.add_argument("--workflows", help="modules whose workflow types new starts are "
                        "checked against (env SAGA_WORKFLOWS)")
    server.set_defaults(handler=server_run)

    service = commands.add_parser("service", help="the example services")
    sub = service.add_subparsers(dest="action", required=True, metavar="ACTION")
    srun = sub.add_parser("run", help="run one service until stopped")
    srun.add_argument("name", help="payments, inventory, shipping, notifications or ops")
    srun.add_argument("--instance-id", help="stable id of this instance, naming its local "
                      "store (default: hostname); several instances of a service share "
                      "its command partitions")
    srun.add_argument("--stock", type=Path, help="inventory: JSON file of sku -> quantity")
    srun.add_argument("--module", help="import services from this module's SERVICES dict "
                      "instead of the examples")
    srun.add_argument("--metrics-port", type=int, help="serve Prometheus /metrics on this "
                      "port (env SAGA_METRICS_PORT; default: not served)")
    srun.set_defaults(handler=service_run)
    report = sub.add_parser("report", help="a service's business state (ledger, stock), "
                            "read from its state topic")
    report.add_argument("name")
    report.add_argument("--stock", type=Path, help="inventory: the starting stock file, to "
                        "show levels no reservation has changed")
    report.add_argument("--json", action="store_true")
    report.set_defaults(handler=service_report)


def coordinator_run(args: argparse.Namespace, settings: Settings) -> int:
    from saga.coordinator import Coordinator, CoordinatorConfig

    settings = bootstrapped(settings)
    registry = load_workflows(args.workflows, settings)
    _serve_metrics(settings, args.metrics_port)
    tracing.configure("saga-coordinator")
    config = CoordinatorConfig(batch_size=args.batch_size,
                               **({"instance_id": args.instance_id} if args.instance_id else {}))
    coordinator = Coordinator(settings, registry, config, progress=progress)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: coordinator.stop())
    settle_the_heap(settings)
    stats = coordinator.run()
    progress(f"coordinator stopped: {stats}")
    return 0


def server_run(args: argparse.Namespace, settings: Settings) -> int:
    from saga.server import serve

    settings = bootstrapped(settings).with_(**{
        k: v for k, v in (("server_host", args.host), ("server_port", args.port)) if v})
    registry = load_workflows(args.workflows, settings)
    tracing.configure("saga-server")
    set_process_context(instance=args.instance_id or socket.gethostname(), component="server")
    progress(f"saga server on http://{settings.server_host}:{settings.server_port} "
             f"(API under /api, OpenAPI at /openapi.json); indexing "
             f"{settings.topic('saga.journal')}")
    settle_the_heap(settings)
    serve(settings, registry=registry, instance_id=args.instance_id)
    return 0


def service_run(args: argparse.Namespace, settings: Settings) -> int:
    from saga.examples import services

    settings = bootstrapped(settings)
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

    _serve_metrics(settings, args.metrics_port)
    tracing.configure(f"saga-service-{args.name}")
    set_process_context(instance=args.instance_id or socket.gethostname(),
                        component=f"service:{args.name}")

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        progress(f"service {args.name} running")
        await service.run(settings, instance_id=args.instance_id, stop=stop)

    settle_the_heap(settings)
    asyncio.run(main())
    return 0


def settle_the_heap(settings: Settings) -> None:
    """Before a long-running process starts its work: what start-up made (modules,
    workflows, clients) lives as long as the process, so it is frozen out of the cyclic
    collector's scans, and young collections come every SAGA_GC_YOUNG_THRESHOLD
    allocations instead of 700. A full scan walks every cached state and coroutine;
    with Python's thresholds they took 7-9% of the coordinator's CPU."""
    if not settings.gc_young_threshold:
        return
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(settings.gc_young_threshold, middle, old)


def _serve_metrics(settings: Settings, port: int | None) -> None:
    chosen = port or settings.metrics_port
    if chosen:
        from saga.telemetry import metrics

        metrics.serve(chosen, settings.metrics_host)
        progress(f"metrics on http://{settings.metrics_host}:{chosen}/metrics")


def service_report(args: argparse.Namespace, settings: Settings) -> int:
    from saga.examples import services

    if args.name not in services.REPORTS:
        raise ConfigError(f"no example service {args.name!r}",
                          hint=f"choose one of {', '.join(services.REPORTS)}")
    report = services.read_report(bootstrapped(settings), args.name, stock=args.stock)
    if args.json:
        emit_json(report)
    else:
        for key, value in report.items():
            if key != "entries":
                print(f"{key}: {value}")
    return 0
