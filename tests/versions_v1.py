"""The `greeter` workflow as first deployed (version 1 only), for the version-switch
test; tests/versions_v2.py is the deploy after it."""

from __future__ import annotations

from typing import Any

from saga import SagaContext, workflow


@workflow("greeter", version=1)
async def greeter_v1(ctx: SagaContext, data: dict[str, Any]) -> dict[str, Any]:
    await ctx.call("payments", "charge", {"id": ctx.saga_id, "amount_cents": 100})
    await ctx.wait_signal("go")
    return {"path": "v1"}
