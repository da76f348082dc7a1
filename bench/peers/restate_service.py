# restate is only in .venv-peers: to the main venv's mypy its decorators are Any.
# mypy: disable-error-code="untyped-decorator"
"""The order saga as a Restate workflow, in the Python SDK: what the SDK process of
bench/peers/restate_peer.py serves (``hypercorn bench.peers.restate_service:app``).

``run`` does each step in ``ctx.run`` (its result is journaled before the workflow goes
on) and waits on the durable promise ``warehouse_picked``, which the workflow's shared
handler of that name resolves. Kept apart from the driver, which needs no SDK: the
driver's own parts then import (and are tested) without restate installed.
"""

from __future__ import annotations

from typing import Any

import restate

from bench.peers import common
from bench.peers.restate_peer import WORKFLOW


# ---- the steps: common's functions, async so ctx.run needs no thread hand-off --------
async def charge(order: dict[str, Any]) -> dict[str, Any]:
    return common.charge(order)


async def refund(order: dict[str, Any]) -> dict[str, Any]:
    return common.refund(order)


async def reserve(order: dict[str, Any]) -> dict[str, Any]:
    try:
        return common.reserve(order)
    except common.OutOfStock as err:
        # Out of stock is an answer, not an outage: a TerminalError is journaled as the
        # step's result and raised in the workflow, where any other error is retried.
        raise restate.TerminalError(str(err), status_code=409) from err


async def schedule_shipment(order: dict[str, Any]) -> dict[str, Any]:
    return common.schedule_shipment(order)


async def send_confirmation(order_id: str, tracking: dict[str, Any]) -> dict[str, Any]:
    return common.send_confirmation(order_id, tracking)


# ---- the workflow --------------------------------------------------------------------
order_saga = restate.Workflow(WORKFLOW)


@order_saga.main(name="run")
async def run_saga(ctx: restate.WorkflowContext, order: dict[str, Any]) -> dict[str, Any]:
    await ctx.run_typed("charge", charge, restate.RunOptions(), order)
    try:
        await ctx.run_typed("reserve", reserve, restate.RunOptions(), order)
    except restate.TerminalError:
        await ctx.run_typed("refund", refund, restate.RunOptions(), order)
        return {"status": "cancelled", "reason": "out_of_stock"}
    # Resolved already when the signal came first: the promise then returns at once.
    await ctx.promise(common.SIGNAL).value()
    tracking = await ctx.run_typed("schedule_shipment", schedule_shipment,
                                   restate.RunOptions(), order)
    await ctx.run_typed("send_confirmation", send_confirmation, restate.RunOptions(),
                        order["id"], tracking)
    return {"status": "completed", "tracking": tracking["id"]}


@order_saga.handler(name=common.SIGNAL)
async def warehouse_picked(ctx: restate.WorkflowSharedContext) -> None:
    await ctx.promise(common.SIGNAL).resolve(True)


#: What hypercorn serves (``bench.peers.restate_service:app``) in the SDK process.
app = restate.app(services=[order_saga])

