"""The deploy after tests/versions_v1.py: version 1 kept as it was (the sagas that
started with it replay it), version 2 added (new starts take it): it confirms too."""

from __future__ import annotations

from typing import Any

from saga import SagaContext, workflow
from tests.versions_v1 import greeter_v1  # noqa: F401 - registers version 1 as well


@workflow("greeter", version=2)
async def greeter_v2(ctx: SagaContext, data: dict[str, Any]) -> dict[str, Any]:
    await ctx.call("payments", "charge", {"id": ctx.saga_id, "amount_cents": 200})
    await ctx.wait_signal("go")
    await ctx.call("notifications", "send_confirmation", {"order_id": ctx.saga_id})
    return {"path": "v2"}
