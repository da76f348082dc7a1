"""Buggy workflows for the hostile-input system test: each breaks in its own way; the
coordinator imports this module beside the order saga (SAGA_WORKFLOWS)."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

from saga import SagaContext, workflow


@workflow("hostile.set_input")
async def set_input(ctx: SagaContext, data: Any) -> None:
    await ctx.call("payments", "charge", {"ids": {1, 2}})


@workflow("hostile.decimal_input")
async def decimal_input(ctx: SagaContext, data: Any) -> None:
    await ctx.call("payments", "charge", {"amount": Decimal("45.99")})


@workflow("hostile.huge_int")
async def huge_int(ctx: SagaContext, data: Any) -> None:
    await ctx.call("payments", "charge", {"amount_cents": 2**70})


@workflow("hostile.big_result")
async def big_result(ctx: SagaContext, data: Any) -> str:
    return "x" * (600 * 1024)


@workflow("hostile.system_exit")
async def system_exit(ctx: SagaContext, data: Any) -> None:
    raise SystemExit(1)


@workflow("hostile.cancelled_error")
async def cancelled_error(ctx: SagaContext, data: Any) -> None:
    raise asyncio.CancelledError()


@workflow("hostile.endless_loop")
async def endless_loop(ctx: SagaContext, data: Any) -> None:
    while True:
        pass


@workflow("hostile.fan_out")
async def fan_out(ctx: SagaContext, data: Any) -> None:
    await ctx.gather(*(ctx.call("ops", "alert", {"n": n}) for n in range(5000)))


@workflow("hostile.finally_await")
async def finally_await(ctx: SagaContext, data: Any) -> None:
    try:
        await ctx.wait_signal("never")
    finally:
        await ctx.call("ops", "alert", {"cleanup": True})


@workflow("hostile.await_reply")
async def await_reply(ctx: SagaContext, data: Any) -> None:
    await ctx.call("nobody", "listens")  # no timeout: only a reply can end this wait
