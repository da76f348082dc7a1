from __future__ import annotations

import asyncio
from typing import Any

import pytest

from saga import RetryPolicy, SagaContext, SagaStatus, StepFailed, workflow
from saga.engine import events as ev
from saga.engine.workflow import WorkflowRegistry
from tests.saga.engine.sim import Sim

ORDER = {"id": "o-1", "customer": "c-9", "amount_cents": 4599,
         "items": [{"sku": "sku-1", "qty": 2}]}


def order_registry() -> WorkflowRegistry:
    registry = WorkflowRegistry()

    @workflow("order", version=1, registry=registry)
    async def order(ctx: SagaContext, order: dict[str, Any]) -> dict[str, Any]:
        await ctx.call("payments", "charge", order, compensate=("payments", "refund"),
                       retry=RetryPolicy(max_attempts=3))
        try:
            await ctx.call("inventory", "reserve", order, compensate=("inventory", "release"))
        except StepFailed as e:
            await ctx.compensate()
            return {"status": "cancelled", "reason": e.reason}
        await ctx.wait_signal("warehouse_picked")
        tracking = await ctx.call("shipping", "schedule", order)
        await ctx.call("notifications", "send_confirmation",
                       {"order_id": order["id"], **tracking})
        return {"status": "completed", "tracking": tracking["id"]}

    return registry


@pytest.fixture(params=[False, True], ids=["cached", "replayed"])
def sim(request: pytest.FixtureRequest) -> Sim:
    """Every scenario runs twice: with live coroutines, and replaying at every input."""
    return Sim(order_registry(), always_replay=request.param)


def run_happy_path(sim: Sim) -> None:
    sim.start("o-1", "order", ORDER)
    charge = sim.last_command("o-1")
    assert (charge.service, charge.name, charge.command_id) == ("payments", "charge",
                                                                 "o-1:0:1")
    sim.reply("o-1", charge.command_id, {"charge_id": "ch-1"})
    reserve = sim.last_command("o-1")
    assert (reserve.service, reserve.name) == ("inventory", "reserve")
    sim.reply("o-1", reserve.command_id, {"reserved": True})
    assert sim.states["o-1"].status is SagaStatus.WAITING
    assert sim.states["o-1"].waits == {2: "warehouse_picked"}
    sim.signal("o-1", "warehouse_picked", {"by": "w-3"})
    schedule = sim.last_command("o-1")
    assert (schedule.service, schedule.name) == ("shipping", "schedule")
    sim.reply("o-1", schedule.command_id, {"id": "trk-9"})
    confirm = sim.last_command("o-1")
    assert confirm.input == {"order_id": "o-1", "id": "trk-9"}
    sim.reply("o-1", confirm.command_id, {})


def test_order_happy_path(sim: Sim) -> None:
    run_happy_path(sim)
    state = sim.states["o-1"]
    assert state.status is SagaStatus.COMPLETED
    assert state.result == {"status": "completed", "tracking": "trk-9"}
    assert [c.name for c in sim.commands("o-1")] == ["charge", "reserve", "schedule",
                                                     "send_confirmation"]
    assert sim.refold("o-1") == state


def test_cached_and_replayed_runs_write_the_same_journal() -> None:
    cached, replayed = Sim(order_registry()), Sim(order_registry(), always_replay=True)
    run_happy_path(cached)
    run_happy_path(replayed)
    assert cached.history == replayed.history
    assert replayed.engine.replays > cached.engine.replays == 0


def test_out_of_stock_refunds_the_charge(sim: Sim) -> None:
    sim.start("o-1", "order", ORDER)
    charge = sim.last_command("o-1")
    sim.reply("o-1", charge.command_id, {"charge_id": "ch-1"})
    reserve = sim.last_command("o-1")
    sim.reply("o-1", reserve.command_id, outcome="BUSINESS_ERROR", error="out_of_stock")
    refund = sim.last_command("o-1")
    assert (refund.service, refund.name, refund.kind) == ("payments", "refund",
                                                          ev.CommandKind.COMPENSATION)
    assert refund.command_id == "o-1:0c:1"
    assert refund.input == {"input": ORDER, "result": {"charge_id": "ch-1"},
                            "command_id": "o-1:0:1", "idempotency_key": "o-1:0"}
    assert sim.states["o-1"].status is SagaStatus.COMPENSATING
    sim.reply("o-1", refund.command_id, {"refunded": True})
    state = sim.states["o-1"]
    assert state.status is SagaStatus.COMPENSATED
    assert state.result == {"status": "cancelled", "reason": "out_of_stock"}
    # the failed reservation needs no release: exactly one compensation
    assert [c.kind for c in sim.commands("o-1")].count(ev.CommandKind.COMPENSATION) == 1


def test_a_signal_before_the_wait_is_buffered(sim: Sim) -> None:
    sim.start("o-1", "order", ORDER)
    sim.signal("o-1", "warehouse_picked", "early")
    sim.reply("o-1", sim.last_command("o-1").command_id, {})
    sim.reply("o-1", sim.last_command("o-1").command_id, {})
    assert sim.last_command("o-1").name == "schedule"  # did not wait
    assert sim.states["o-1"].resolved_waits == {2: 0}


def test_technical_failures_retry_after_durable_backoff_then_exhaust(sim: Sim) -> None:
    sim.start("o-1", "order", ORDER)
    for attempt in (1, 2):
        command = sim.last_command("o-1")
        assert command.attempt == attempt
        failed_at = sim.now_ms + 10
        sim.reply("o-1", command.command_id, outcome="TECHNICAL_ERROR", error="timeout")
        # the next attempt waits on a durable timer: 1 s, then 2 s (backoff 2.0)
        assert sim.last_command("o-1").attempt == attempt
        [timer] = sim.states["o-1"].pending_timers()
        assert (timer.timer_id, timer.purpose) == (f"o-1:0:retry:{attempt + 1}", "retry")
        assert timer.due_ms == failed_at + 1000 * 2 ** (attempt - 1)
        assert sim.status("o-1") is SagaStatus.WAITING
        sim.fire_pending("o-1")
    third = sim.last_command("o-1")
    assert (third.command_id, third.attempt) == ("o-1:0:3", 3)
    sim.reply("o-1", third.command_id, outcome="TECHNICAL_ERROR", error="boom")
    state = sim.states["o-1"]
    # charge never succeeded, so nothing to compensate: the saga fails at once
    assert state.status is SagaStatus.FAILED
    assert "retries_exhausted" in state.error
    assert "3 attempts, last: boom" in state.error


def test_late_duplicate_and_foreign_replies(sim: Sim) -> None:
    sim.start("o-1", "order", ORDER)
    sim.reply("o-1", "o-1:0:1", outcome="TECHNICAL_ERROR", error="x")
    sim.fire_pending("o-1")
    late = sim.reply("o-1", "o-1:0:1", {"late": True})
    assert [e.event.type_name for e in late.entries] == ["InputIgnored"]
    assert late.entries[0].event == ev.InputIgnored(
        "late_reply", "reply for attempt 1 of payments.charge; attempt 2 is current")
    sim.reply("o-1", "o-1:0:2", {"ok": 1})
    duplicate = sim.reply("o-1", "o-1:0:2", {"ok": 1})
    assert duplicate.entries[0].event == ev.InputIgnored(
        "duplicate_reply", "reply for o-1:0:2 after the first one")
    never = sim.reply("o-1", "o-1:7:1")
    assert never.rejection is not None
    assert never.rejection.reason == "reply_for_unknown_command"
    assert never.entries == []
    garbage = sim.reply("o-1", "not-a-command-id")
    assert garbage.rejection is not None
    assert garbage.rejection.reason == "reply_for_unknown_command"


def test_inputs_for_unknown_sagas_and_types_are_rejected(sim: Sim) -> None:
    unknown_type = sim.start("x-1", "no-such-workflow", {})
    assert unknown_type.rejection is not None
    assert unknown_type.rejection.reason == "unknown_saga_type"
    assert "known: order" in unknown_type.rejection.detail
    for decision in (sim.signal("ghost", "warehouse_picked"), sim.reply("ghost", "ghost:0:1"),
                     sim.cancel("ghost")):
        assert decision.rejection is not None
        assert decision.rejection.reason == "unknown_saga"


def test_a_repeated_start_changes_nothing_but_is_recorded(sim: Sim) -> None:
    sim.start("o-1", "order", ORDER)
    before = sim.states["o-1"]
    again = sim.start("o-1", "order", {"id": "other"})
    assert [e.event for e in again.entries] == [
        ev.InputIgnored("duplicate_start", "start of 'order': the saga exists")]
    assert again.rejection is None
    assert len(sim.commands("o-1")) == 1
    after = sim.states["o-1"]
    assert (after.input, after.status, after.steps) == (before.input, before.status,
                                                        before.steps)


def test_cancel_compensates_newest_first(sim: Sim) -> None:
    sim.start("o-1", "order", ORDER)
    sim.reply("o-1", sim.last_command("o-1").command_id, {"charge_id": "ch"})
    sim.reply("o-1", sim.last_command("o-1").command_id, {"reservation": "r"})
    assert sim.status("o-1") is SagaStatus.WAITING
    sim.cancel("o-1", "customer changed their mind")
    release = sim.last_command("o-1")
    assert (release.name, release.kind) == ("release", ev.CommandKind.COMPENSATION)
    sim.reply("o-1", release.command_id, {})
    refund = sim.last_command("o-1")
    assert refund.name == "refund"
    sim.reply("o-1", refund.command_id, {})
    state = sim.states["o-1"]
    assert state.status is SagaStatus.CANCELLED
    assert state.error == "customer changed their mind"
    # a signal after the end is recorded and ignored
    late = sim.signal("o-1", "warehouse_picked")
    assert late.entries[0].event.type_name == "InputIgnored"
    assert sim.states["o-1"].status is SagaStatus.CANCELLED


def test_cancel_waits_for_an_in_flight_action_before_compensating(sim: Sim) -> None:
    sim.start("o-1", "order", ORDER)
    sim.cancel("o-1")
    assert sim.status("o-1") is SagaStatus.COMPENSATING
    assert len(sim.commands("o-1")) == 1  # the charge is still in flight
    sim.reply("o-1", "o-1:0:1", {"charge_id": "ch"})  # it succeeded after all
    refund = sim.last_command("o-1")
    assert (refund.name, refund.command_id) == ("refund", "o-1:0c:1")
    sim.reply("o-1", refund.command_id, {})
    assert sim.states["o-1"].status is SagaStatus.CANCELLED


def test_a_failing_compensation_is_retried_and_visible(sim: Sim) -> None:
    sim.start("o-1", "order", ORDER)
    sim.reply("o-1", "o-1:0:1", {"charge_id": "ch"})
    sim.reply("o-1", "o-1:1:1", outcome="BUSINESS_ERROR", error="out_of_stock")
    delays = []
    for attempt in range(1, 10):
        before = sim.now_ms + 10
        sim.reply("o-1", f"o-1:0c:{attempt}", outcome="TECHNICAL_ERROR", error="bank down")
        state = sim.states["o-1"]
        assert state.status is SagaStatus.COMPENSATING
        assert state.last_error == "payments.refund: bank down"
        [pause] = state.pending_timers()
        assert pause.timer_id == f"o-1:0c:retry:{attempt + 1}"
        delays.append(pause.due_ms - before)
        sim.fire_pending("o-1")
        assert sim.last_command("o-1").command_id == f"o-1:0c:{attempt + 1}"
    # doubling from 1 s, capped at a minute; never given up
    assert delays == [1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000]
    sim.reply("o-1", "o-1:0c:10", {})
    assert sim.states["o-1"].status is SagaStatus.COMPENSATED


def test_a_raising_workflow_compensates_then_fails() -> None:
    registry = WorkflowRegistry()

    @workflow("flaky", registry=registry)
    async def flaky(ctx: SagaContext, data: Any) -> None:
        await ctx.call("a", "do", compensate=("a", "undo"))
        await ctx.call("b", "do", compensate=("b", "undo"))
        raise ValueError("bug in step three")

    sim = Sim(registry)
    sim.start("f", "flaky")
    sim.reply("f", "f:0:1", 1)
    sim.reply("f", "f:1:1", 2)
    assert [c.command_id for c in sim.commands("f")][-1] == "f:1c:1"
    sim.reply("f", "f:1c:1")
    assert sim.last_command("f").command_id == "f:0c:1"
    sim.reply("f", "f:0c:1")
    state = sim.states["f"]
    assert state.status is SagaStatus.FAILED
    assert state.error == "ValueError: bug in step three"


def test_gather_runs_steps_in_parallel_and_keeps_order() -> None:
    registry = WorkflowRegistry()

    @workflow("fan", registry=registry)
    async def fan(ctx: SagaContext, data: Any) -> list[Any]:
        results: list[Any] = await ctx.gather(ctx.call("a", "x"), ctx.call("b", "y"),
                                              ctx.call("c", "z"))
        return results

    for always_replay in (False, True):
        sim = Sim(registry, always_replay=always_replay)
        sim.start("g", "fan")
        assert [c.command_id for c in sim.commands("g")] == ["g:0:1", "g:1:1", "g:2:1"]
        sim.reply("g", "g:2:1", "C")
        sim.reply("g", "g:0:1", "A")
        assert sim.states["g"].status is SagaStatus.RUNNING
        sim.reply("g", "g:1:1", "B")
        assert sim.states["g"].result == ["A", "B", "C"]


def test_now_random_uuid_are_recorded_and_replayed() -> None:
    registry = WorkflowRegistry()

    @workflow("values", registry=registry)
    async def values(ctx: SagaContext, data: Any) -> dict[str, Any]:
        first = {"now": ctx.now().timestamp(), "random": ctx.random(), "uuid": ctx.uuid()}
        await ctx.call("a", "x")
        return first

    cached, replayed = Sim(registry), Sim(registry, always_replay=True)
    for sim in (cached, replayed):
        sim.start("v", "values")
        sim.reply("v", "v:3:1")
    recorded = [e.event for e in cached.history["v"] if isinstance(e.event, ev.ValueRecorded)]
    assert [r.what for r in recorded] == ["now", "random", "uuid"]
    result = cached.states["v"].result
    assert result["now"] == recorded[0].value / 1000
    assert result["uuid"] == recorded[2].value
    # a replay answers from the journal: feed the cached history to a fresh engine
    fresh = Sim(registry, always_replay=True)
    fresh.states["v"] = cached.refold("v")
    fresh.history["v"] = list(cached.history["v"])
    assert fresh.signal("v", "nothing").state.result == result  # type: ignore[union-attr]


def test_changed_code_parks_the_saga_with_the_divergence() -> None:
    old, new = WorkflowRegistry(), WorkflowRegistry()

    @workflow("w", registry=old)
    async def before(ctx: SagaContext, data: Any) -> None:
        await ctx.call("payments", "charge")
        await ctx.call("inventory", "reserve")

    @workflow("w", registry=new)
    async def after(ctx: SagaContext, data: Any) -> None:
        await ctx.call("inventory", "reserve")  # reordered: not deterministic any more
        await ctx.call("payments", "charge")

    sim = Sim(old)
    sim.start("w-1", "w")
    upgraded = Sim(new)
    upgraded.states = sim.states
    upgraded.history = sim.history
    decision = upgraded.reply("w-1", "w-1:0:1", {})
    state = upgraded.states["w-1"]
    assert state.status is SagaStatus.PARKED
    assert decision.entries[-1].event == ev.SagaParked(
        ev.ParkReason.NON_DETERMINISM, "step 0: the journal has a call to payments.charge, the "
        "code now calls inventory.reserve")
    # a parked saga takes no further action
    assert upgraded.reply("w-1", "w-1:0:1", {}).entries[0].event.type_name == "InputIgnored"


def test_removed_steps_are_a_divergence_too() -> None:
    old, new = WorkflowRegistry(), WorkflowRegistry()

    @workflow("w", registry=old)
    async def before(ctx: SagaContext, data: Any) -> None:
        await ctx.gather(ctx.call("a", "x"), ctx.call("b", "y"))

    @workflow("w", registry=new)
    async def after(ctx: SagaContext, data: Any) -> None:
        await ctx.call("a", "x")

    sim = Sim(old)
    sim.start("w-1", "w")
    upgraded = Sim(new)
    upgraded.states, upgraded.history = sim.states, sim.history
    upgraded.reply("w-1", "w-1:0:1", {})
    assert upgraded.states["w-1"].status is SagaStatus.PARKED
    assert "journal holds step 1" in upgraded.states["w-1"].error


def test_foreign_awaitables_park_the_saga_with_a_clear_error() -> None:
    registry = WorkflowRegistry()

    @workflow("sleepy", registry=registry)
    async def sleepy(ctx: SagaContext, data: Any) -> None:
        await asyncio.sleep(1)

    @workflow("yielder", registry=registry)
    async def yielder(ctx: SagaContext, data: Any) -> None:
        await asyncio.sleep(0)

    sim = Sim(registry)
    for name in ("sleepy", "yielder"):
        sim.start(name, name)
        state = sim.states[name]
        assert state.status is SagaStatus.PARKED
        assert state.parked_reason == "foreign_awaitable"
        assert "may only await ctx.*" in state.error


def test_an_unregistered_version_parks_instead_of_guessing() -> None:
    v1, v2 = WorkflowRegistry(), WorkflowRegistry()

    @workflow("w", version=1, registry=v1)
    async def w1(ctx: SagaContext, data: Any) -> None:
        await ctx.call("a", "x")

    @workflow("w", version=2, registry=v2)
    async def w2(ctx: SagaContext, data: Any) -> None:
        await ctx.call("a", "x")

    sim = Sim(v1)
    sim.start("w-1", "w")
    upgraded = Sim(v2)
    upgraded.states, upgraded.history = sim.states, sim.history
    upgraded.reply("w-1", "w-1:0:1")
    assert upgraded.states["w-1"].parked_reason == "unknown_workflow"


def test_the_cache_is_bounded_and_eviction_only_costs_a_replay() -> None:
    sim = Sim(order_registry(), cache_size=2)
    for i in range(5):
        sim.start(f"o-{i}", "order", {**ORDER, "id": f"o-{i}"})
    for i in (3, 4):
        sim.reply(f"o-{i}", f"o-{i}:0:1", {})
    assert sim.engine.replays == 0  # the two newest are live
    for i in (0, 1, 2):
        sim.reply(f"o-{i}", f"o-{i}:0:1", {})
    assert sim.engine.replays == 3  # o-0..o-2 had been evicted
    assert all(sim.last_command(f"o-{i}").name == "reserve" for i in range(5))
