"""Nothing waits for ever: calls and compensations that name no timeout get the
coordinator's default deadline, a compensation that gets no reply is tried again, and a
saga cannot be flooded with signals no wait takes."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from saga import SagaContext, SagaStatus, StepFailed, seconds, workflow
from saga.engine import events as ev
from saga.engine.budget import RunBudget
from saga.engine.decider import RejectReason
from saga.engine.inputs import CommandReply, FireTimer, ReplyOutcome
from saga.engine.state import Timer
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
    assert sim.states["u"].deadlines() == {"u:0:timeout:1": sim.now_ms + 60_000}
    assert sim.last_command("u").deadline_ms == sim.now_ms + 60_000
    sim.reply("u", "u:0:1", {"charge_id": "ch-1"})
    # the reply ended the default deadline; the next call names its own (5 s)
    assert sim.states["u"].deadlines() == {"u:1:timeout:1": sim.now_ms + 5_000}


def test_a_deadline_costs_no_journal_entry_of_its_own(sim: Sim) -> None:
    sim.start("u", "undo")
    sim.reply("u", "u:0:1", {"charge_id": "ch-1"})
    sim.reply("u", "u:1:1", {"reserved": True})
    assert sim.types("u") == ["SagaStarted", "CommandIssued", "CommandCompleted",
                              "CommandIssued", "CommandCompleted", "SagaCompleted"]
    assert sim.states["u"].deadlines() == {}
    assert sim.states["u"].summary()["timers"] == []


def test_a_deadline_that_fires_after_the_reply_changes_nothing(sim: Sim) -> None:
    sim.start("u", "undo")
    sim.reply("u", "u:0:1", {"charge_id": "ch-1"})
    late = sim.fire("u", "u:0:timeout:1")  # swept before the reply was decided
    assert [e.event.type_name for e in late.entries] == ["InputIgnored"]
    assert sim.states["u"].steps[0].outcome == "ok"


def test_a_step_past_its_deadline_is_retried_and_the_summary_shows_the_deadline(
        sim: Sim) -> None:
    sim.start("u", "undo")
    assert sim.states["u"].summary()["timers"] == [
        {"timer_id": "u:0:timeout:1", "purpose": "timeout", "due_ms": sim.now_ms + 60_000}]
    timed_out = sim.fire("u", "u:0:timeout:1")
    assert timed_out.entries[0].event == ev.CommandTimedOut("u:0:1", 0, ev.CommandKind.ACTION)
    assert sim.states["u"].steps[0].reason == "timeout"
    sim.fire_pending("u", "retry")
    assert sim.last_command("u").command_id == "u:0:2"
    assert set(sim.states["u"].deadlines()) == {"u:0:timeout:2"}
    assert sim.refold("u") == sim.states["u"]


def test_a_journal_written_with_deadline_timers_is_still_honoured(sim: Sim) -> None:
    """Journals from before deadlines were held in the state schedule a timer per
    attempt and cancel it on the reply; the decider still reads them that way."""
    sim.start("u", "undo")
    state = sim.states["u"]
    legacy_step = replace(state.steps[0], deadline_ms=0)
    legacy = replace(state, steps={0: legacy_step}, timers={"u:0:timeout:1": Timer(
        "u:0:timeout:1", 0, ev.TimerPurpose.TIMEOUT, sim.now_ms + 60_000)})
    assert legacy.deadlines() == {}
    replied = sim.engine.decide("u", legacy, CommandReply("u:0:1", "payments",
                                                          ReplyOutcome.OK, {"charge_id": "c"},
                                                          ""), sim.now_ms)
    assert [e.event for e in replied.entries][1] == ev.TimerCancelled("u:0:timeout:1")
    fired = sim.engine.decide("u", legacy, FireTimer("u:0:timeout:1", 0), sim.now_ms)
    assert [e.event for e in fired.entries][:2] == [
        ev.TimerFired("u:0:timeout:1"),
        ev.CommandTimedOut("u:0:1", 0, ev.CommandKind.ACTION)]


def test_a_compensation_without_a_reply_is_tried_again(sim: Sim) -> None:
    sim.start("u", "undo")
    sim.reply("u", "u:0:1", {"charge_id": "ch-1"})
    sim.reply("u", "u:1:1", outcome="BUSINESS_ERROR", error="out_of_stock")
    refund = sim.last_command("u")
    assert (refund.command_id, refund.kind) == ("u:0c:1", ev.CommandKind.COMPENSATION)
    assert sim.states["u"].deadlines() == {"u:0c:timeout:1": sim.now_ms + 60_000}
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
    assert state.deadlines() == {}
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
