"""A workflow whose first step takes seconds to decide, so that a test can pause the
coordinator inside a batch, between consuming it and committing it."""

from __future__ import annotations

import time
from typing import Any

from saga import SagaContext, workflow

DECIDE_S = 4.0


@workflow("slow_decision")
async def slow_decision(ctx: SagaContext, data: Any) -> Any:
    time.sleep(DECIDE_S)  # deliberately blocking: the coordinator is inside its batch
    return await ctx.call("payments", "charge", {"amount_cents": 100, "id": ctx.saga_id})
