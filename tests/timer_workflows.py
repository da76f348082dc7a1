"""Workflows and a misbehaving service for the durable-time system tests.

The coordinator imports this module (SAGA_WORKFLOWS) and `saga service run flaky
--module tests.timer_workflows` runs the service: each behaviour is chosen by the
saga's input, so one process serves every test.
"""

from __future__ import annotations

import asyncio
from typing import Any

from saga import RetryPolicy, SagaContext, StepFailed, seconds, workflow
from saga.service import Command, Service

flaky = Service("flaky")
SERVICES = {"flaky": flaky}


@flaky.handler("work")
async def work(cmd: Command) -> dict[str, Any]:
    """Fails technically for the first ``fail_times`` attempts; sleeps ``delay_s`` on the
    attempts listed in ``slow_attempts``."""
    if cmd.attempt in cmd.body.get("slow_attempts", []):
        await asyncio.sleep(cmd.body["delay_s"])
    if cmd.attempt <= cmd.body.get("fail_times", 0):
        raise RuntimeError(f"attempt {cmd.attempt} breaks on purpose")
    return {"attempt": cmd.attempt}


@flaky.handler("charge")
async def charge(cmd: Command) -> dict[str, Any]:
    cmd.state.put(f"charge/{cmd.saga_id}", True)
    return {"charged": True}


@flaky.handler("refund")
async def refund(cmd: Command) -> dict[str, Any]:
    cmd.state.put(f"refund/{cmd.saga_id}", True)
    return {"refunded": True}


@workflow("flaky_call")
async def flaky_call(ctx: SagaContext, data: dict[str, Any]) -> dict[str, Any]:
    await ctx.call("flaky", "charge", data, compensate=("flaky", "refund"))
    timeout = seconds(data["timeout_s"]) if "timeout_s" in data else None
    try:
        result = await ctx.call("flaky", "work", data, timeout=timeout, retry=RetryPolicy(
            max_attempts=data.get("attempts", 3), initial_interval=seconds(0.3), backoff=2.0))
    except StepFailed as failure:
        await ctx.compensate()
        return {"failed": failure.reason}
    return {"result": result}


@workflow("nap")
async def nap(ctx: SagaContext, data: dict[str, Any]) -> dict[str, Any]:
    """Sleeps until ``wake_at_ms`` (wall clock), so many sagas can share one due second."""
    started = int(ctx.now().timestamp() * 1000)
    await ctx.sleep(seconds(max(0, data["wake_at_ms"] - started) / 1000))
    return {"slept_ms": max(0, data["wake_at_ms"] - started)}


@workflow("unanswered_call")
async def unanswered_call(ctx: SagaContext, data: dict[str, Any]) -> dict[str, Any]:
    """Calls a service nobody runs: only its reply deadline can end the step."""
    try:
        await ctx.call("nobody", "listen", data, timeout=seconds(data["timeout_s"]),
                       retry=RetryPolicy(max_attempts=1))
    except StepFailed as failure:
        return {"failed": failure.reason}
    return {"answered": True}
