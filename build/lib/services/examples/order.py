"""The order saga of DESIGN.md §2: charge, reserve, wait up to 24 h for the pick (or
``pick_timeout_s`` from the input), alert operations if it never comes, ship, confirm;
refund when stock runs out."""

from __future__ import annotations

from typing import Any

from saga import RetryPolicy, SagaContext, StepFailed, hours, seconds, workflow


@workflow("order", version=1)
async def order(ctx: SagaContext, order: dict[str, Any]) -> dict[str, Any]:
    await ctx.call("payments", "charge", order, compensate=("payments", "refund"),
                   retry=RetryPolicy(max_attempts=3, backoff=2.0), timeout=seconds(30))
    try:
        await ctx.call("inventory", "reserve", order, compensate=("inventory", "release"))
    except StepFailed as failure:  # a business failure, e.g. out_of_stock
        await ctx.compensate()  # registered compensations, newest first
        return {"status": "cancelled", "reason": failure.reason}
    pick_timeout = seconds(order["pick_timeout_s"]) if "pick_timeout_s" in order else hours(24)
    picked = await ctx.wait_signal("warehouse_picked", timeout=pick_timeout)
    if picked is None:  # never picked: tell operations, then ship anyway
        await ctx.call("ops", "alert", {"order_id": order["id"], "reason": "not_picked"})
    tracking = await ctx.call("shipping", "schedule", order)
    await ctx.call("notifications", "send_confirmation",
                   {"order_id": order["id"], **tracking})
    return {"status": "completed", "tracking": tracking["id"]}
