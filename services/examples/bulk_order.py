"""A bulk order: one child ``order`` saga per line, run side by side, gathered.

Each child is a saga of its own (its id ``<bulk id>-<n>``, its journal, its partition):
it charges, reserves and ships its line, and is compensated on its own if it fails. A
line that fails (out of stock) is a ``StepFailed`` here; the bulk order reports which
lines went through. Cancelling the bulk order cancels the lines still running.

Input: ``{"id", "customer", "lines": [{"sku", "qty", "amount_cents"}, ...]}``.
"""

from __future__ import annotations

from typing import Any

from saga import SagaContext, StepFailed, workflow


@workflow("bulk_order", version=1)
async def bulk_order(ctx: SagaContext, bulk: dict[str, Any]) -> dict[str, Any]:
    lines = [ctx.child("order", {
        "id": f"{bulk['id']}-{n}", "customer": bulk["customer"], "pick_timeout_s": 1,
        "amount_cents": line["amount_cents"], "items": [{"sku": line["sku"],
                                                        "qty": line["qty"]}]},
        id=f"{ctx.saga_id}-{n}") for n, line in enumerate(bulk["lines"])]
    outcomes: list[dict[str, Any]] = []
    for n, line in enumerate(lines):  # every child runs meanwhile; this only collects
        try:
            result = await line
        except StepFailed as failed:
            outcomes.append({"line": n, "status": "failed", "reason": failed.reason})
            continue
        outcomes.append({"line": n, **result})
    shipped = sum(1 for o in outcomes if o.get("status") == "completed")
    return {"lines": len(lines), "shipped": shipped, "outcomes": outcomes}
