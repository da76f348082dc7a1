"""What journal entries cause beyond the journal (saga/engine/effects.py): the mapping
the coordinator's outbox and saga.testing share."""

from __future__ import annotations

from saga.engine import events as ev
from saga.engine.effects import (
    PublishSchedule,
    SendCommand,
    SendToSaga,
    StartTimer,
    StopTimer,
    effects_of,
)
from saga.engine.inputs import CancelSaga, ChildFinished, StartSaga
from saga.engine.lifecycle import SagaStatus
from saga.engine.schedule import SCHEDULE_TYPE
from saga.engine.state import SagaState


def entry(event: ev.Event, saga_id: str = "p", seq: int = 3) -> ev.Entry:
    return ev.Entry(saga_id, seq, 1_000, event)


def test_commands_timers_and_children() -> None:
    state = SagaState("p", saga_type="order", status=SagaStatus.RUNNING)
    issued = ev.CommandIssued(0, "p:0:1", "payments", "charge", ev.CommandKind.ACTION, 1, {})
    timer = ev.TimerScheduled("p:1:wait:0", 1, ev.TimerPurpose.WAIT, 5_000)
    assert effects_of(state, entry(issued)) == (SendCommand(issued, 1_000),)
    assert effects_of(state, entry(timer)) == (StartTimer(timer),)
    assert effects_of(state, entry(ev.TimerCancelled("p:1:wait:0"))) == (
        StopTimer("p:1:wait:0"),)
    assert effects_of(state, entry(ev.ChildStarted(2, "p.2", "item", {"n": 1}))) == (
        SendToSaga("p.2", StartSaga("item", {"n": 1}, parent="p", parent_step=2),
                   "child:p.2"),)
    assert effects_of(state, entry(ev.ChildCancelRequested(2, "p.2"))) == (
        SendToSaga("p.2", CancelSaga("its parent p was cancelled"), "cancel-child:p.2"),)
    assert effects_of(state, entry(ev.WaitStarted(1, "go"))) == ()
    assert effects_of(state, entry(ev.SagaCompleted({}, False))) == ()  # no parent


def test_a_child_tells_its_parent_how_it_ended() -> None:
    child = SagaState("p.2", saga_type="item", status=SagaStatus.COMPENSATED, parent="p",
                      result={"reason": "out"}, error="", run=1)
    assert effects_of(child, entry(ev.SagaCompleted({"reason": "out"}, True), "p.2")) == (
        SendToSaga("p", ChildFinished("p.2", "COMPENSATED", {"reason": "out"}, ""),
                   "child-ended:p.2:1"),)


def test_a_schedule_publishes_its_state_and_its_end() -> None:
    schedule = SagaState("schedule:nightly", saga_type=SCHEDULE_TYPE,
                         status=SagaStatus.WAITING)
    published = {"cron": "0 2 * * *", "runs": 1}
    assert effects_of(schedule, entry(ev.AttributesSet(4, {"schedule": published}),
                                      "schedule:nightly")) == (
        PublishSchedule("nightly", published, 1_000),)
    assert effects_of(schedule, entry(ev.AttributesSet(4, {"other": 1}))) == ()
    assert effects_of(schedule, entry(ev.SagaCompleted({"deleted": True}, False))) == (
        PublishSchedule("nightly", None, 1_000),)
