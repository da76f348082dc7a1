"""Services (and a workflow) for system tests that count how often each step's handler
really ran: every run appends its idempotency key as one line to SAGA_TEST_RUNS_FILE,
shared by every instance (O_APPEND: the lines of two processes never interleave).
Run with `saga service run NAME --module tests.counted_services`; the coordinator
imports the workflow with SAGA_WORKFLOWS=...,tests.counted_services."""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

from saga import RetryPolicy, SagaContext, StepFailed, workflow
from saga.service import Command, Service

#: How long slow.work takes.
SLOW_S = float(os.environ.get("SAGA_TEST_SLOW_S", "1"))
#: What noisy.explode raises: an exception whose message is 2 MB.
HUGE_MESSAGE = "boom " + "x" * (2 * 1024 * 1024)

slow = Service("slow")
noisy = Service("noisy")


def _count(cmd: Command) -> None:
    fd = os.open(os.environ["SAGA_TEST_RUNS_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, f"{cmd.idempotency_key}\n".encode())
    finally:
        os.close(fd)


def runs(path: Path) -> Counter[str]:
    """Handler runs per idempotency key, as the services counted them."""
    if not path.exists():
        return Counter()
    return Counter(path.read_text().split())


@slow.handler("work")
async def work(cmd: Command) -> dict[str, Any]:
    _count(cmd)
    await asyncio.sleep(SLOW_S)
    return {"pid": os.getpid()}


@noisy.handler("explode")
async def explode(cmd: Command) -> None:
    _count(cmd)
    raise RuntimeError(HUGE_MESSAGE)


@noisy.handler("ok")
async def ok(cmd: Command) -> dict[str, Any]:
    _count(cmd)
    return {"fine": True}


SERVICES = {"slow": slow, "noisy": noisy}


@workflow("counted.explode")
async def explode_twice(ctx: SagaContext, data: Any) -> dict[str, Any]:
    """Calls noisy.explode, whose every run fails technically, for two attempts."""
    try:
        await ctx.call("noisy", "explode", data, retry=RetryPolicy(
            max_attempts=2, initial_interval=timedelta(milliseconds=200)))
    except StepFailed as failed:
        return {"failed": failed.reason, "detail": failed.detail[:200]}
    return {"failed": None}
