"""Nothing waits for ever: calls and compensations that name no timeout get the
coordinator's default deadline, a compensation that gets no reply is tried again, and a
saga cannot be flooded with signals no wait takes."""

from __future__ import annotations

from typing import Any

import pytest

from saga import SagaContext, SagaStatus, StepFailed, seconds, workflow
from saga.engine import events as ev
from saga.engine.budget import RunBudget
from saga.engine.decider import RejectReason
from saga.engine.workflow import WorkflowRegistry
from tests.saga.engine.sim import Sim

DEFAULT = seconds(60)


def registry() -> WorkflowRegistry:
    reg = WorkflowRegistry()

    @workflow("undo", registry=reg)
    async def undo(ctx: SagaContext, data: Any) -> Any:
        await ctx.call("payments", "charge", compensate=("payments", "refund"))
        try:
            await ctx.call("inventory", "reserve", timeout=seconds(5))
        except StepFailed:
            await ctx.compensate()
            return "undone"
        return "done"

    @workflow("listen", registry=reg)
    async def listen(ctx: SagaContext, data: Any) -> Any:
        return await ctx.wait_signal("go")

    return reg


@pytest.fixture(params=[False, True], ids=["cached", "replayed"])
def sim(request: pytest.FixtureRequest) -> Sim:
    return Sim(registry(), always_replay=request.param, step_timeout=DEFAULT,
               budget=RunBudget(max_pending_signals=3))


def test_a_call_without_a_timeout_gets_the_default_deadline(sim: Sim) -> None:
    sim.start("u", "undo")
    [deadline] = sim.states["u"].pending_timers()
    assert deadline.timer_id == "u:0:timeout:1"
    assert deadline.due_ms == sim.now_ms + 60_000
    sim.reply("u", "u:0:1", {"charge_id": "ch-1"})
    # the reply cancelled the default deadline; the next call names its own (5 s)
    assert sim.states["u"].timers["u:0:timeout:1"].status == "cancelled"
    [second] = sim.states["u"].pending_timers()
    assert (second.timer_id, second.due_ms) == ("u:1:timeout:1", sim.now_ms + 5_000)


def test_a_compensation_without_a_reply_is_tried_again(sim: Sim) -> None:
    sim.start("u", "undo")
    sim.reply("u", "u:0:1", {"charge_id": "ch-1"})
    sim.reply("u", "u:1:1", outcome="BUSINESS_ERROR", error="out_of_stock")
    refund = sim.last_command("u")
    assert (refund.command_id, refund.kind) == ("u:0c:1", ev.CommandKind.COMPENSATION)
    deadline = sim.states["u"].timers["u:0c:timeout:1"]
    assert deadline.due_ms == sim.now_ms + 60_000
    sim.fire("u", "u:0c:timeout:1")
    assert sim.history["u"][-2].event == ev.CommandTimedOut("u:0c:1", 0,
                                                            ev.CommandKind.COMPENSATION)
    state = sim.states["u"]
    assert state.status is SagaStatus.COMPENSATING
    assert state.last_error == "payments.refund: no reply in time"
    [pause] = sim.fire_pending("u", "compensation_retry")  # the capped backoff between attempts
    assert pause == "u:0c:retry:2"
    assert sim.last_command("u").command_id == "u:0c:2"
    late = sim.reply("u", "u:0c:1", {"refunded": True})
    assert late.entries[0].event.type_name == "InputIgnored"
    sim.reply("u", "u:0c:2", {"refunded": True})
    state = sim.states["u"]
    assert (state.status, state.result) == (SagaStatus.COMPENSATED, "undone")
    assert state.pending_timers() == []
    assert sim.refold("u") == state


def test_signals_no_wait_takes_are_bounded(sim: Sim) -> None:
    sim.start("l", "listen")
    sim.signal("l", "go", 1)  # taken by the wait: the saga completes
    assert sim.states["l"].result == 1
    sim.start("m", "undo")
    for n in range(3):
        assert sim.signal("m", "noise", n).rejection is None
    flooded = sim.signal("m", "noise", 3)
    assert flooded.rejection is not None
    assert flooded.rejection.reason is RejectReason.TOO_MANY_SIGNALS
    assert "3 signals" in flooded.rejection.detail
    assert len(sim.states["m"].signals) == 3


def test_live_coroutines_are_bounded_by_their_history() -> None:
    reg = registry()
    sim = Sim(reg, cache_size=100)
    sim.engine = type(sim.engine)(reg, cache_size=100, cached_entries=5)
    for n in range(4):
        sim.start(f"u{n}", "undo")  # two entries each (started, issued), all blocked
    # 4 sagas x 2 entries > 5: the oldest coroutines were closed, the newest kept
    assert list(sim.engine._cache) == ["u2", "u3"]
    sim.reply("u0", "u0:0:1", {"charge_id": "ch"})  # an evicted saga replays
    assert sim.engine.replays == 1
    assert sim.states["u0"].steps[1].command_id == "u0:1:1"
