"""A subscription that lives for years: charge, wait a billing period, continue as new.

Each period is a fresh run of the same saga (``ctx.continue_as_new``), so its history,
its replay and its projection stay the size of one period however many it has lived.
The plan can be changed while it runs (the update ``change_plan``: validated, applied
once, answered); ``cancel_subscription`` (a signal) ends it at the end of the period.
Its attributes (customer, plan, cycle) make it findable: ``saga list --attribute
plan=gold``.

Input: ``{"customer", "plan", "amount_cents", "period_s"}``; optional ``"cycles"`` (end
after that many charges) and ``"cycle"`` (which one this run is; 0 when new).
"""

from __future__ import annotations

from typing import Any

from saga import SagaContext, seconds, workflow


def check_plan(change: Any) -> None:
    if not isinstance(change, dict) or not isinstance(change.get("plan"), str):
        raise ValueError('a plan change is {"plan": NAME, "amount_cents": N}')
    amount = change.get("amount_cents")
    if not isinstance(amount, int) or amount <= 0:
        raise ValueError("amount_cents must be a positive integer")


@workflow("subscription", version=1)
async def subscription(ctx: SagaContext, sub: dict[str, Any]) -> dict[str, Any]:
    cycle: int = sub.get("cycle", 0)
    plan = {"plan": sub["plan"], "amount_cents": sub["amount_cents"]}
    ctx.set_attributes({"customer": sub["customer"], "plan": plan["plan"], "cycle": cycle})

    def change_plan(change: dict[str, Any]) -> dict[str, Any]:
        plan.update(plan=change["plan"], amount_cents=change["amount_cents"])
        return {"plan": plan["plan"], "from_cycle": cycle + 1}

    ctx.on_update("change_plan", change_plan, validator=check_plan)
    charged = await ctx.call("payments", "charge", {
        "id": f"{ctx.saga_id}#{cycle}", "customer": sub["customer"],
        "amount_cents": plan["amount_cents"]})
    cancelled = await ctx.wait_signal("cancel_subscription", timeout=seconds(sub["period_s"]))
    if cancelled is not None:
        return {"status": "cancelled", "cycles": cycle + 1, "last_charge": charged["charge_id"]}
    if sub.get("cycles") and cycle + 1 >= sub["cycles"]:
        return {"status": "ended", "cycles": cycle + 1, "last_charge": charged["charge_id"]}
    ctx.continue_as_new({**sub, **plan, "cycle": cycle + 1})
