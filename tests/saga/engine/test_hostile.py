"""Buggy and hostile workflows: each ends PARKED or FAILED with its reason, nothing they
do escapes the decider, and a run cut short leaves nothing of itself in the journal."""

from __future__ import annotations

import asyncio
import sys
from decimal import Decimal
from typing import Any

import pytest

from saga import SagaContext, SagaStatus, workflow
from saga.engine import events as ev
from saga.engine.budget import RunBudget
from saga.engine.inputs import AbandonSaga, ResumeSaga
from saga.engine.workflow import WorkflowRegistry
from tests.saga.engine.sim import Sim


def _sim(fn: Any, budget: RunBudget | None = None) -> Sim:
    registry = WorkflowRegistry()
    workflow("w", registry=registry)(fn)
    sim = Sim(registry)
    if budget is not None:
        sim.engine.budget = budget
    return sim


def _parked(sim: Sim, saga_id: str = "s") -> ev.SagaParked:
    state = sim.states[saga_id]
    assert state.status is SagaStatus.PARKED, (state.status, state.error)
    last = sim.history[saga_id][-1].event
    assert isinstance(last, ev.SagaParked)
    return last


@pytest.mark.parametrize("bad", [{1, 2}, Decimal("1.5"), 2**70, {"n": object()}],
                         ids=["set", "decimal", "huge-int", "object"])
def test_a_call_input_that_is_not_json_fails_the_saga_at_the_call(bad: Any) -> None:
    async def w(ctx: SagaContext, data: Any) -> None:
        await ctx.call("a", "do", {"value": bad})

    sim = _sim(w)
    sim.start("s", "w")
    state = sim.states["s"]
    assert state.status is SagaStatus.FAILED
    assert state.error.startswith("UnencodableValue: the input of ctx.call('a', 'do') is "
                                  "not JSON")
    assert sim.commands("s") == []


def test_the_workflow_sees_the_error_and_may_go_on() -> None:
    async def w(ctx: SagaContext, data: Any) -> str:
        try:
            await ctx.call("a", "do", {"x": {1}})
        except Exception as exc:  # noqa: BLE001 - what a workflow author may write
            return type(exc).__name__
        return "sent"

    sim = _sim(w)
    sim.start("s", "w")
    assert sim.states["s"].status is SagaStatus.COMPLETED
    assert sim.states["s"].result == "UnencodableValue"


def test_an_oversized_call_input_or_result_fails_the_saga() -> None:
    async def big_input(ctx: SagaContext, data: Any) -> None:
        await ctx.call("a", "do", "x" * 2000)

    sim = _sim(big_input, RunBudget(max_value_bytes=1000))
    sim.start("s", "w")
    assert "over the limit of 1000" in sim.states["s"].error

    async def big_result(ctx: SagaContext, data: Any) -> str:
        return "x" * 2000

    sim = _sim(big_result, RunBudget(max_value_bytes=1000))
    sim.start("s", "w")
    assert sim.states["s"].status is SagaStatus.FAILED
    assert "result is 2002 bytes, over the limit of 1000" in sim.states["s"].error


@pytest.mark.parametrize("error", [SystemExit(3), asyncio.CancelledError(),
                                   KeyboardInterrupt()],
                         ids=["SystemExit", "CancelledError", "KeyboardInterrupt"])
def test_a_base_exception_parks_the_saga_and_journals_nothing_of_the_run(
        error: BaseException) -> None:
    async def w(ctx: SagaContext, data: Any) -> None:
        ctx.now()  # a step the cut-short run would have recorded
        raise error

    sim = _sim(w)
    sim.start("s", "w")
    parked = _parked(sim)
    assert parked.reason is ev.ParkReason.WORKFLOW_BUG
    assert type(error).__name__ in parked.detail
    assert [e.event.type_name for e in sim.history["s"]] == ["SagaStarted", "SagaParked"]


def test_a_finally_that_awaits_ctx_cannot_break_eviction_or_cancel() -> None:
    async def w(ctx: SagaContext, data: Any) -> None:
        try:
            await ctx.wait_signal("go")
        finally:
            await ctx.call("cleanup", "now")

    sim = _sim(w)
    sim.start("s", "w")
    sim.engine.forget()  # eviction and revocation close the coroutine
    sim.start("t", "w")
    sim.cancel("t", "operator")  # cancel closes it too
    assert sim.states["t"].status is SagaStatus.CANCELLED
    assert not [c for c in sim.commands("s") + sim.commands("t") if c.service == "cleanup"]


@pytest.mark.skipif(sys.platform == "win32", reason="SIGALRM is POSIX")
def test_an_endless_loop_is_cut_off_by_the_wall_clock_and_parks() -> None:
    async def w(ctx: SagaContext, data: Any) -> None:
        ctx.now()
        while True:
            pass

    sim = _sim(w, RunBudget(max_seconds=0.2))
    sim.start("s", "w")
    parked = _parked(sim)
    assert parked.reason is ev.ParkReason.BUDGET_EXCEEDED
    assert "more than 0.2s" in parked.detail
    assert [e.event.type_name for e in sim.history["s"]] == ["SagaStarted", "SagaParked"]


def test_an_endless_loop_of_ctx_calls_parks_on_the_event_budget() -> None:
    async def w(ctx: SagaContext, data: Any) -> None:
        while True:
            ctx.uuid()

    sim = _sim(w, RunBudget(max_events=500, max_seconds=0))
    sim.start("s", "w")
    parked = _parked(sim)
    assert "more than 500 journal entries" in parked.detail


def test_a_runaway_fan_out_parks_on_the_command_budget() -> None:
    async def w(ctx: SagaContext, data: Any) -> None:
        await ctx.gather(*(ctx.call("a", "do", {"n": n}) for n in range(300)))

    sim = _sim(w, RunBudget(max_commands=200))
    sim.start("s", "w")
    assert "more than 200 commands" in _parked(sim).detail
    assert sim.commands("s") == []


def test_a_history_past_its_limit_parks() -> None:
    async def w(ctx: SagaContext, data: Any) -> None:
        while True:
            await ctx.call("a", "do")

    sim = _sim(w, RunBudget(max_history=6))
    sim.start("s", "w")
    for attempt in range(10):
        if sim.states["s"].status is SagaStatus.PARKED:
            break
        sim.reply("s", f"s:{attempt}:1", {})
    # checked before each run: the entries of one decision may take it past the limit
    assert "the limit is 6" in _parked(sim).detail
    assert 6 <= len(sim.history["s"]) <= 9


# ---- ways out of PARKED ---------------------------------------------------------------
def _charge_then(fail: bool) -> WorkflowRegistry:
    """An order-like workflow that charges, then (``fail``) hits a bug."""
    registry = WorkflowRegistry()

    @workflow("w", registry=registry)
    async def w(ctx: SagaContext, data: Any) -> str:
        await ctx.call("payments", "charge", {}, compensate=("payments", "refund"))
        if fail:
            raise SystemExit("a bug")
        return "done"

    return registry


def _parked_after_charge() -> Sim:
    sim = Sim(_charge_then(fail=True))
    sim.start("s", "w")
    sim.reply("s", "s:0:1", {"charge_id": "ch-1"})
    assert sim.states["s"].status is SagaStatus.PARKED
    return sim


def test_resume_replays_a_parked_saga_with_the_code_now_deployed() -> None:
    sim = _parked_after_charge()
    sim.send("s", ResumeSaga("same code"))  # the bug is still there: it parks again
    assert sim.states["s"].status is SagaStatus.PARKED
    sim.engine.registry = _charge_then(fail=False)  # the fix is deployed
    sim.send("s", ResumeSaga("fixed"))
    state = sim.states["s"]
    assert state.status is SagaStatus.COMPLETED
    assert state.result == "done"
    types = [e.event.type_name for e in sim.history["s"]]
    assert types.count("SagaResumed") == 2
    assert types.count("SagaParked") == 2


def test_resume_of_a_saga_that_is_not_parked_is_recorded_and_ignored() -> None:
    sim = Sim(_charge_then(fail=False))
    sim.start("s", "w")
    sim.send("s", ResumeSaga("why not"))
    assert sim.states["s"].status is SagaStatus.RUNNING
    last = sim.history["s"][-1].event
    assert isinstance(last, ev.InputIgnored)
    assert last.reason == "resume_ignored"


def test_cancel_of_a_parked_saga_compensates_what_it_did() -> None:
    sim = _parked_after_charge()
    sim.cancel("s", "give up")
    refund = sim.last_command("s")
    assert (refund.service, refund.name, refund.kind) == ("payments", "refund",
                                                          ev.CommandKind.COMPENSATION)
    sim.reply("s", refund.command_id, {})
    assert sim.states["s"].status is SagaStatus.CANCELLED


@pytest.mark.parametrize("compensate", [False, True], ids=["as-is", "compensated"])
def test_abandon_ends_the_saga_failed(compensate: bool) -> None:
    sim = _parked_after_charge()
    sim.send("s", AbandonSaga("cannot be fixed", compensate))
    if compensate:
        refund = sim.last_command("s")
        assert refund.name == "refund"
        sim.reply("s", refund.command_id, {})
    else:
        assert [c.name for c in sim.commands("s")] == ["charge"]
    state = sim.states["s"]
    assert state.status is SagaStatus.FAILED
    assert state.error == "abandoned: cannot be fixed"


def test_the_wall_clock_puts_back_an_alarm_it_found() -> None:
    import signal

    from saga.engine.budget import wall_clock

    previous = signal.signal(signal.SIGALRM, lambda *_: None)
    signal.setitimer(signal.ITIMER_REAL, 30)
    try:
        with wall_clock(1):
            pass
        left, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 25 < left <= 30
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_the_budget_holds_outside_the_workflow_run_too() -> None:
    """Past the event budget while finishing (not inside the workflow's own run): the
    input is kept, the rest dropped, the saga parks; nothing escapes the decider."""
    async def w(ctx: SagaContext, data: Any) -> str:
        ctx.random()
        ctx.random()
        return "done"

    sim = _sim(w, RunBudget(max_events=3))
    sim.start("s", "w")
    parked = _parked(sim)
    assert parked.reason is ev.ParkReason.BUDGET_EXCEEDED
    assert [e.event.type_name for e in sim.history["s"]] == ["SagaStarted", "SagaParked"]


def test_a_workflow_swallowing_the_budget_signal_still_parks() -> None:
    async def w(ctx: SagaContext, data: Any) -> None:
        try:
            while True:
                ctx.uuid()
        except BaseException:  # noqa: BLE001 - the bug under test
            pass
        raise ValueError("and then it fails")

    sim = _sim(w, RunBudget(max_events=50, max_seconds=0))
    sim.start("s", "w")
    assert _parked(sim).reason is ev.ParkReason.BUDGET_EXCEEDED
