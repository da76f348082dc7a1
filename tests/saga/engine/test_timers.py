"""Durable time in the engine: step timeouts, signal timeouts, sleeps, stale timers."""

from __future__ import annotations

from typing import Any

import pytest

from saga import RetryPolicy, SagaContext, SagaStatus, StepFailed, seconds, workflow
from saga.engine import events as ev
from saga.engine.workflow import WorkflowRegistry
from tests.saga.engine.sim import Sim


def registry() -> WorkflowRegistry:
    reg = WorkflowRegistry()

    @workflow("timed", registry=reg)
    async def timed(ctx: SagaContext, data: Any) -> Any:
        try:
            return await ctx.call("svc", "slow", retry=RetryPolicy(
                max_attempts=2, initial_interval=seconds(0)), timeout=seconds(5))
        except StepFailed as e:
            return {"failed": e.reason}

    @workflow("pick", registry=reg)
    async def pick(ctx: SagaContext, data: Any) -> Any:
        picked = await ctx.wait_signal("picked", timeout=seconds(30))
        if picked is None:
            await ctx.call("ops", "alert")
        return {"picked": picked}

    @workflow("nap", registry=reg)
    async def nap(ctx: SagaContext, data: Any) -> Any:
        await ctx.sleep(seconds(60))
        return await ctx.call("svc", "after")

    return reg


@pytest.fixture(params=[False, True], ids=["cached", "replayed"])
def sim(request: pytest.FixtureRequest) -> Sim:
    return Sim(registry(), always_replay=request.param)


def test_a_step_timeout_fails_the_attempt_and_a_late_reply_is_ignored(sim: Sim) -> None:
    sim.start("t", "timed")
    assert sim.states["t"].deadlines() == {"t:0:timeout:1": sim.now_ms + 5000}
    sim.fire("t", "t:0:timeout:1")
    assert "CommandTimedOut" in sim.types("t")
    assert sim.last_command("t").command_id == "t:0:2"  # retried at once (interval 0)
    late = sim.reply("t", "t:0:1", "too late")
    assert late.entries[0].event == ev.InputIgnored(
        "late_reply", "reply for attempt 1 of svc.slow; attempt 2 is current")
    sim.reply("t", "t:0:2", "in time")
    state = sim.states["t"]
    assert state.result == "in time"
    assert state.status is SagaStatus.COMPLETED
    # the answered attempt's deadline has stopped, so nothing is left pending
    assert state.pending_timers() == []
    assert state.deadlines() == {}


def test_timeouts_exhaust_the_retries(sim: Sim) -> None:
    sim.start("t", "timed")
    sim.fire("t", "t:0:timeout:1")
    sim.fire("t", "t:0:timeout:2")
    assert sim.states["t"].result == {"failed": "retries_exhausted"}
    late = sim.reply("t", "t:0:2", "late")
    assert late.entries[0].event == ev.InputIgnored(
        "late_reply", "reply for t:0:2 after its timeout")


def test_a_wait_times_out_and_a_later_signal_is_recorded_only(sim: Sim) -> None:
    sim.start("p", "pick")
    assert sim.status("p") is SagaStatus.WAITING
    [deadline] = sim.states["p"].pending_timers()
    assert (deadline.timer_id, deadline.purpose) == ("p:0:wait:0", "wait")
    sim.fire("p", "p:0:wait:0")
    assert sim.last_command("p").name == "alert"
    sim.signal("p", "picked", {"late": True})
    assert sim.states["p"].signals == (("picked", {"late": True}),)
    assert sim.last_command("p").name == "alert"  # not acted on
    sim.reply("p", "p:1:1")
    assert sim.states["p"].result == {"picked": None}


def test_a_signal_in_time_cancels_the_wait_timer(sim: Sim) -> None:
    sim.start("p", "pick")
    sim.signal("p", "picked", "yes")
    state = sim.states["p"]
    assert state.result == {"picked": "yes"}
    assert state.timers["p:0:wait:0"].status == "cancelled"
    stale = sim.fire("p", "p:0:wait:0")
    assert stale.entries[0].event == ev.InputIgnored("stale_timer",
                                                     "timer p:0:wait:0 is cancelled")


def test_sleep_waits_for_its_timer(sim: Sim) -> None:
    sim.start("n", "nap")
    assert sim.commands("n") == []
    assert sim.status("n") is SagaStatus.WAITING
    [timer] = sim.states["n"].pending_timers()
    assert (timer.purpose, timer.due_ms) == ("sleep", sim.now_ms + 60_000)
    sim.fire("n", timer.timer_id)
    assert sim.last_command("n").name == "after"
    again = sim.fire("n", timer.timer_id)  # a timer fired twice is seen once
    assert again.entries[0].event.type_name == "InputIgnored"
    assert [e for e in sim.types("n") if e == "TimerFired"] == ["TimerFired"]


def test_unknown_timers_are_ignored_and_timers_die_with_the_saga(sim: Sim) -> None:
    sim.start("n", "nap")
    assert sim.fire("n", "n:9:sleep:0").entries[0].event.type_name == "InputIgnored"
    sim.cancel("n")
    state = sim.states["n"]
    assert state.status is SagaStatus.CANCELLED
    assert state.pending_timers() == []  # cancelled before the end, tombstoned on the topic


def test_changing_a_sleep_into_a_call_is_a_divergence() -> None:
    old, new = registry(), WorkflowRegistry()

    @workflow("nap", registry=new)
    async def nap(ctx: SagaContext, data: Any) -> Any:
        return await ctx.call("svc", "after")

    sim = Sim(old)
    sim.start("n", "nap")
    upgraded = Sim(new)
    upgraded.states, upgraded.history = sim.states, sim.history
    upgraded.fire("n", "n:0:sleep:0")
    assert upgraded.states["n"].status is SagaStatus.PARKED
    assert "the journal has a sleep" in upgraded.states["n"].error


def test_a_signal_without_payload_is_not_a_timeout(sim: Sim) -> None:
    sim.start("p", "pick")
    sim.signal("p", "picked", None)
    assert sim.states["p"].result == {"picked": {}}
    assert sim.commands("p") == []  # no alert
