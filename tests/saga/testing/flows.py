"""Workflows for the saga.testing tests, in a registry of their own (the default one is
shared by the whole test session)."""

from __future__ import annotations

import asyncio
from typing import Any

from saga import RetryPolicy, SagaContext, StepFailed, hours, seconds, workflow
from saga.engine.workflow import WorkflowRegistry

FLOWS = WorkflowRegistry()
#: how often `drifting` ran: code that is not deterministic on replay
RUNS = [0]


@workflow("transfer", registry=FLOWS)
async def transfer(ctx: SagaContext, data: dict[str, Any]) -> dict[str, Any]:
    debit = await ctx.call("bank", "debit", data, compensate=("bank", "credit"),
                           retry=RetryPolicy(max_attempts=3, backoff=2.0),
                           timeout=seconds(30))
    try:
        await ctx.call("ledger", "record", {"debit": debit, **data}, timeout=seconds(30),
                       retry=RetryPolicy(max_attempts=2))
    except StepFailed as failed:
        await ctx.compensate()
        return {"status": "undone", "reason": failed.reason}
    return {"status": "done", "debit": debit}


@workflow("approval", registry=FLOWS)
async def approval(ctx: SagaContext, data: dict[str, Any]) -> dict[str, Any]:
    answer = await ctx.wait_signal("approved", timeout=hours(24 * 30))
    return {"approved": answer is not None, "by": (answer or {}).get("by")}


@workflow("forever", registry=FLOWS)
async def forever(ctx: SagaContext, data: Any) -> Any:
    return await ctx.wait_signal("never")


@workflow("nap", registry=FLOWS)
async def nap(ctx: SagaContext, data: Any) -> Any:
    await ctx.sleep(seconds(0))  # due at once: no time needs to pass
    return "awake"


@workflow("sleepy", registry=FLOWS)
async def sleepy(ctx: SagaContext, data: Any) -> Any:
    await asyncio.sleep(0.01)  # a foreign awaitable: the saga parks
    return "slept"


@workflow("sleepy", version=2, registry=FLOWS)
async def sleepy_fixed(ctx: SagaContext, data: Any) -> Any:
    await ctx.sleep(seconds(1))
    return "slept"


@workflow("drifting", registry=FLOWS)
async def drifting(ctx: SagaContext, data: Any) -> Any:
    RUNS[0] += 1
    if RUNS[0] == 1:  # not deterministic: a replay takes the other branch
        await ctx.call("bank", "debit", {})
    else:
        await ctx.call("ledger", "record", {})
    await ctx.wait_signal("go")
    return "done"


def greeter_v1() -> WorkflowRegistry:
    reg = WorkflowRegistry()

    @workflow("greeter", version=1, registry=reg)
    async def greeter(ctx: SagaContext, data: Any) -> Any:
        await ctx.call("bank", "debit", {})
        await ctx.wait_signal("go")
        await ctx.call("bank", "old-step", {})
        return "v1"

    return reg


def greeter_patched() -> WorkflowRegistry:
    reg = WorkflowRegistry()

    @workflow("greeter", version=1, registry=reg)
    async def greeter(ctx: SagaContext, data: Any) -> Any:
        await ctx.call("bank", "debit", {})
        await ctx.wait_signal("go")
        if ctx.patched("new-step"):
            await ctx.call("bank", "new-step", {})
        else:
            await ctx.call("bank", "old-step", {})
        return "patched"

    return reg


def greeter_changed() -> WorkflowRegistry:
    """Version 1 changed in place, without a patch: histories would diverge."""
    reg = WorkflowRegistry()

    @workflow("greeter", version=1, registry=reg)
    async def greeter(ctx: SagaContext, data: Any) -> Any:
        await ctx.call("bank", "credit", {})
        await ctx.wait_signal("go")
        return "changed"

    return reg
