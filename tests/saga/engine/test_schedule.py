"""The built-in schedule saga in the pure engine: one child per slot, the overlap
policies, catching up after downtime within the window, pause, resume, trigger, delete,
and continuing as new."""

from __future__ import annotations

from typing import Any

import pytest

from saga import SagaStatus
from saga.engine import events as ev
from saga.engine.inputs import ChildFinished, DeliverSignal, StartSaga
from saga.engine.schedule import BUILTINS, ScheduleSpec, schedule_saga_id, slots_after
from saga.engine.workflow import WorkflowRegistry
from saga.errors import ConfigError
from tests.saga.engine.sim import Sim

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
SID = schedule_saga_id("every10")


def start(sim: Sim, **spec: Any) -> None:
    sim.now_ms = T0 + 1_000
    sim.send(SID, StartSaga("saga.schedule", {"spec": {
        "schedule_id": "every10", "cron": "* * * * * */10", "saga_type": "job",
        "input": {"x": 1}, **spec}}))


def at(sim: Sim, ms: int) -> None:
    """Let time reach ``ms`` and fire what is due (the schedule's wait deadline)."""
    sim.now_ms = ms
    for timer in sorted(sim.states[SID].pending_timers(), key=lambda t: t.due_ms):
        if timer.due_ms <= ms:
            sim.fire(SID, timer.timer_id)


def children(sim: Sim) -> list[str]:
    return [e.event.child_id for e in sim.history[SID] if isinstance(e.event, ev.ChildStarted)]


def catalog(sim: Sim) -> dict[str, Any]:
    entry: dict[str, Any] = sim.states[SID].attributes["schedule"]
    return entry


@pytest.fixture(params=[False, True], ids=["cached", "replayed"])
def sim(request: pytest.FixtureRequest) -> Sim:
    return Sim(WorkflowRegistry().include(BUILTINS), always_replay=request.param)


def test_a_child_per_slot_and_skip_while_one_runs(sim: Sim) -> None:
    start(sim)
    assert catalog(sim)["next_slot_ms"] == T0 + 10_000
    at(sim, T0 + 10_000)
    assert children(sim) == ["every10@20260101T000010Z"]
    at(sim, T0 + 20_000)  # the first still runs: skipped
    assert len(children(sim)) == 1
    sim.send(SID, ChildFinished("every10@20260101T000010Z", "COMPLETED", {}, ""))
    at(sim, T0 + 30_000)
    assert children(sim)[-1] == "every10@20260101T000030Z"
    assert catalog(sim)["runs"] == 2


def test_after_downtime_the_window_decides_what_runs(sim: Sim) -> None:
    start(sim, overlap="allow", catchup_window_s=35)
    at(sim, T0 + 300_000)  # five minutes late: 30 slots missed, 4 within the window
    assert children(sim) == [f"every10@20260101T0004{s}Z" for s in ("30", "40", "50")] + [
        "every10@20260101T000500Z"]


def test_skip_after_downtime_runs_only_the_latest_slot(sim: Sim) -> None:
    start(sim, catchup_window_s=3600)
    at(sim, T0 + 300_000)
    assert children(sim) == ["every10@20260101T000500Z"]


def test_buffer_runs_the_missed_slots_one_after_another(sim: Sim) -> None:
    start(sim, overlap="buffer", catchup_window_s=25)
    at(sim, T0 + 300_000)  # 280 s, 290 s, 300 s are within 25 s
    assert children(sim) == ["every10@20260101T000440Z"]
    sim.send(SID, ChildFinished("every10@20260101T000440Z", "COMPLETED", {}, ""))
    assert children(sim)[-1] == "every10@20260101T000450Z"  # at once, not at the next slot
    sim.send(SID, ChildFinished("every10@20260101T000450Z", "FAILED", None, "boom"))
    assert children(sim)[-1] == "every10@20260101T000500Z"


def test_pause_resume_trigger_delete(sim: Sim) -> None:
    start(sim)
    sim.send(SID, DeliverSignal("schedule.control", {"op": "pause"}))
    assert catalog(sim)["paused"] is True
    at(sim, T0 + 10_000)
    assert children(sim) == []  # paused: the slot passes
    sim.send(SID, DeliverSignal("schedule.control", {"op": "resume"}))
    sim.send(SID, DeliverSignal("schedule.control", {"op": "trigger"}))
    [manual] = children(sim)
    assert manual.startswith("every10@manual-")
    sim.send(SID, DeliverSignal("schedule.control", {"op": "delete"}))
    state = sim.states[SID]
    assert (state.status, state.result) == (SagaStatus.COMPLETED, {"deleted": True, "runs": 1})
    assert state.attributes["schedule"] is None
    assert state.pending_timers() == []


def test_it_continues_as_new_and_keeps_its_place() -> None:
    sim = Sim(WorkflowRegistry().include(BUILTINS))
    start(sim)
    for n in range(1, 105):
        at(sim, T0 + n * 10_000)
        if sim.states[SID].children:
            last = sorted(sim.states[SID].children.values(), key=lambda c: c.step)[-1]
            if not last.done:
                sim.send(SID, ChildFinished(last.child_id, "COMPLETED", {}, ""))
    state = sim.states[SID]
    assert state.run == 1
    assert catalog(sim)["runs"] >= 100
    started = children(sim)
    assert len(started) == len(set(started))  # never two sagas for one slot


def test_a_bad_spec_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="not a cron expression"):
        ScheduleSpec.of({"schedule_id": "x", "cron": "every tuesday", "saga_type": "job"})
    with pytest.raises(ConfigError, match="unknown time zone"):
        ScheduleSpec.of({"schedule_id": "x", "cron": "0 9 * * *", "saga_type": "job",
                         "timezone": "Mars/Olympus"})
    with pytest.raises(ConfigError, match="overlap must be"):
        ScheduleSpec.of({"schedule_id": "x", "cron": "0 9 * * *", "saga_type": "job",
                         "overlap": "sometimes"})


def test_slots_follow_the_time_zone_through_daylight_saving() -> None:
    spec = ScheduleSpec.of({"schedule_id": "x", "cron": "0 9 * * *", "saga_type": "job",
                            "timezone": "Europe/Berlin"})
    march_28 = 1_774_656_000_000  # 2026-03-28T00:00Z; clocks go forward on the 29th
    first, second = slots_after(spec, march_28, march_28 + 2 * 86_400_000)
    assert (first - march_28) / 3_600_000 == 8  # 09:00 CET = 08:00Z
    assert (second - first) / 3_600_000 == 23  # 09:00 CEST the next day
