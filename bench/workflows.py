"""Workflows the benchmarks run (the coordinator imports this module)."""

from __future__ import annotations

from typing import Any

from saga import SagaContext, hours, seconds, workflow


@workflow("bench_nap")
async def bench_nap(ctx: SagaContext, data: dict[str, Any]) -> dict[str, Any]:
    """Sleep until ``wake_at_ms`` (wall clock): a probe of the timer wheel's lateness."""
    started = int(ctx.now().timestamp() * 1000)
    await ctx.sleep(seconds(max(0, data["wake_at_ms"] - started) / 1000))
    return {"slept_ms": max(0, data["wake_at_ms"] - started)}


@workflow("bench_wait")
async def bench_wait(ctx: SagaContext, data: dict[str, Any]) -> dict[str, Any]:
    """Wait up to a day for ``go``: a saga that holds a durable timer and does nothing,
    the shape of most sagas at any moment (an order waiting for its pick)."""
    got = await ctx.wait_signal("go", timeout=hours(24))
    return {"got": got is not None}
