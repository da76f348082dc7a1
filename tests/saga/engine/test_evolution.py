"""Sagas that live long, in the pure engine (cached and replayed alike): child sagas,
versions and patches, continue-as-new, attributes and updates."""

from __future__ import annotations

from typing import Any

import pytest

from saga import SagaContext, SagaStatus, StepFailed, seconds, workflow
from saga.engine import events as ev
from saga.engine.inputs import ChildFinished, UpdateSaga
from saga.engine.state import fold
from saga.engine.workflow import WorkflowRegistry
from tests.saga.engine.sim import Sim


def registry() -> WorkflowRegistry:
    reg = WorkflowRegistry()

    @workflow("bulk", registry=reg)
    async def bulk(ctx: SagaContext, data: Any) -> Any:
        children = [ctx.child("item", {"n": n}) for n in range(data["items"])]
        try:
            results = await ctx.gather(*children)
        except StepFailed as failed:
            return {"failed": failed.reason, "detail": failed.detail}
        return {"total": sum(r["n"] for r in results)}

    @workflow("patched", version=1, registry=reg)
    async def patched(ctx: SagaContext, data: Any) -> Any:
        await ctx.call("svc", "first")
        await ctx.wait_signal("go")
        if ctx.patched("second-step"):
            await ctx.call("svc", "new-second")
        else:
            await ctx.call("svc", "second")
        return "done"

    @workflow("loop", registry=reg)
    async def loop(ctx: SagaContext, data: Any) -> Any:
        await ctx.sleep(seconds(1))
        await ctx.call("svc", "charge", {"round": data["round"]})
        if data["round"] < 3:
            ctx.continue_as_new({"round": data["round"] + 1})
        return {"rounds": data["round"]}

    @workflow("notes", registry=reg)
    async def notes(ctx: SagaContext, data: Any) -> Any:
        held: list[str] = []

        def too_long(note: Any) -> None:
            if not isinstance(note, str) or len(note) > 10:
                raise ValueError("a note is a string of at most 10 characters")

        def add(note: str) -> int:
            held.append(note)
            return len(held)

        ctx.on_update("add", add, validator=too_long)
        ctx.set_attributes({"customer": data["customer"]})
        await ctx.wait_signal("close")
        await ctx.call("svc", "archive", {"notes": held})
        return held

    return reg


@pytest.fixture(params=[False, True], ids=["cached", "replayed"])
def sim(request: pytest.FixtureRequest) -> Sim:
    return Sim(registry(), always_replay=request.param)


def test_children_fan_out_and_in(sim: Sim) -> None:
    sim.start("b", "bulk", {"items": 3})
    started = [e.event for e in sim.history["b"] if isinstance(e.event, ev.ChildStarted)]
    assert [(c.child_id, c.saga_type, c.input) for c in started] == [
        ("b.0", "item", {"n": 0}), ("b.1", "item", {"n": 1}), ("b.2", "item", {"n": 2})]
    assert sim.states["b"].status is SagaStatus.RUNNING  # children are in flight
    for n in (2, 0, 1):
        sim.send("b", ChildFinished(f"b.{n}", "COMPLETED", {"n": n}, ""))
    state = sim.states["b"]
    assert (state.status, state.result) == (SagaStatus.COMPLETED, {"total": 3})
    assert state.summary()["children"] == ["b.0", "b.1", "b.2"]
    again = sim.send("b", ChildFinished("b.1", "COMPLETED", {"n": 1}, ""))
    assert again.entries[0].event.type_name == "InputIgnored"


def test_a_child_that_fails_is_a_step_failure_and_a_cancel_reaches_the_rest(sim: Sim) -> None:
    sim.start("b", "bulk", {"items": 2})
    sim.send("b", ChildFinished("b.1", "COMPENSATED", {"reason": "out_of_stock"}, ""))
    assert sim.states["b"].result == {"failed": "compensated", "detail": "out_of_stock"}
    sim.start("c", "bulk", {"items": 2})
    sim.cancel("c", "stop")
    cancels = [e.event for e in sim.history["c"] if isinstance(e.event, ev.ChildCancelRequested)]
    assert [c.child_id for c in cancels] == ["c.0", "c.1"]
    for n in (0, 1):
        sim.send("c", ChildFinished(f"c.{n}", "CANCELLED", None, "its parent c was cancelled"))
    assert sim.states["c"].status is SagaStatus.CANCELLED


def test_a_patch_takes_the_new_branch_only_on_new_ground(sim: Sim) -> None:
    # an old saga: it waited for "go" before the patch existed, with history past it
    sim.start("old", "patched")
    sim.reply("old", "old:0:1")
    sim.signal("old", "go")
    assert sim.last_command("old").name == "new-second"  # new ground: the new branch
    assert "second-step" in sim.states["old"].patches
    sim.reply("old", "old:2:1")
    assert sim.states["old"].result == "done"
    assert sim.refold("old") == sim.states["old"]


def test_a_history_past_the_patch_point_keeps_the_old_branch() -> None:
    sim = Sim(registry(), always_replay=True)
    state = fold("s", [
        ev.Entry("s", 0, 1, ev.SagaStarted("patched", 1, None)),
        ev.Entry("s", 1, 1, ev.CommandIssued(0, "s:0:1", "svc", "first",
                                             ev.CommandKind.ACTION, 1, None)),
        ev.Entry("s", 2, 2, ev.CommandCompleted("s:0:1", 0, ev.CommandKind.ACTION, None)),
        ev.Entry("s", 3, 2, ev.WaitStarted(1, "go")),
        ev.Entry("s", 4, 3, ev.SignalReceived("go", None)),
        ev.Entry("s", 5, 3, ev.WaitResolved(1, 0)),
        # the old code's second step, issued before the patch was deployed
        ev.Entry("s", 6, 3, ev.CommandIssued(2, "s:2:1", "svc", "second",
                                             ev.CommandKind.ACTION, 1, None)),
    ])
    sim.states["s"] = state
    decision = sim.reply("s", "s:2:1")
    assert decision.state is not None
    assert (decision.state.status, decision.state.result) == (SagaStatus.COMPLETED, "done")
    assert decision.state.patches == ()  # the old branch, no marker


def test_continue_as_new_starts_a_fresh_run(sim: Sim) -> None:
    sim.start("l", "loop", {"round": 1})
    for round_ in (1, 2, 3):
        state = sim.states["l"]
        assert (state.run, state.input) == (round_ - 1, {"round": round_})
        sim.fire_pending("l", "sleep")
        # step numbers go on across runs: each month's charge is a new command to the
        # service, never a duplicate of last month's it would deduplicate
        sim.reply("l", f"l:{2 * round_ - 1}:1", {"ok": True})
    state = sim.states["l"]
    assert (state.status, state.result, state.run) == (SagaStatus.COMPLETED, {"rounds": 3}, 2)
    issued = [e.event.command_id for e in sim.history["l"]
              if isinstance(e.event, ev.CommandIssued)]
    assert issued == ["l:1:1", "l:3:1", "l:5:1"]
    continued = [e.event for e in sim.history["l"] if isinstance(e.event, ev.SagaContinued)]
    assert [(c.input, c.run) for c in continued] == [({"round": 2}, 1), ({"round": 3}, 2)]
    assert state.steps.keys() == {5}  # only the last run's steps
    assert state.run_started_seq > 0
    assert sim.refold("l") == state


def test_updates_are_validated_applied_once_and_replayed(sim: Sim) -> None:
    sim.start("n", "notes", {"customer": "c-9"})
    assert sim.states["n"].attributes == {"customer": "c-9"}
    first = sim.send("n", UpdateSaga("u-1", "add", "hello"))
    assert [e.event.type_name for e in first.entries] == ["UpdateApplied"]
    assert sim.states["n"].updates["u-1"]["result"] == 1
    refused = sim.send("n", UpdateSaga("u-2", "add", "far too long a note"))
    assert refused.entries[0].event == ev.UpdateRejected(
        "u-2", "add", "ValueError: a note is a string of at most 10 characters")
    unknown = sim.send("n", UpdateSaga("u-3", "remove", "x"))
    assert "no update handler named 'remove'" in unknown.entries[0].event.error  # type: ignore[attr-defined]
    again = sim.send("n", UpdateSaga("u-1", "add", "hello"))
    assert again.entries[0].event.type_name == "InputIgnored"  # applied once
    sim.send("n", UpdateSaga("u-4", "add", "world"))
    assert sim.states["n"].updates["u-4"]["result"] == 2
    sim.signal("n", "close")
    # the handler's changes came back on replay: the archive sees both notes
    assert sim.last_command("n").input == {"notes": ["hello", "world"]}
    sim.reply("n", sim.last_command("n").command_id)
    assert sim.states["n"].result == ["hello", "world"]
    after = sim.send("n", UpdateSaga("u-5", "add", "late"))
    assert after.entries[0].event.type_name == "UpdateRejected"
