"""Durable time on real Kafka: timers survive SIGKILL, retries wait, steps time out,
signals time out, and a storm of 10,000 due timers all fire once."""

from __future__ import annotations

import json
import shutil
import time
from typing import Any

from saga.examples.services import read_report

from saga.config import Settings
from saga.dev.stack import Stack
from saga.engine import events as ev
from saga.engine.inputs import DeliverSignal, FireTimer, StartSaga
from saga.engine.lifecycle import SagaStatus
from saga.errors import CodecError
from saga.kafka import clients
from saga.kafka.records import RecordCodec
from saga.layout import StateLayout
from saga.store.local_projections import LocalProjections
from tests.cli_helpers import run_saga
from tests.system import history, order, running_stack, wait_for, wait_terminal

WORKFLOWS = "saga.examples.order,tests.timer_workflows"


def _types(settings: Settings, saga_id: str) -> list[str]:
    return [e.event.type_name for e in history(settings, saga_id)]


def _fired_sent_at_ms(settings: Settings, timer_id: str) -> int:
    """When the wheel sent ``timer_id``'s TimerFired (its inbox record's sent time)."""
    codec = RecordCodec()
    for record in clients.read_records(settings.kafka, settings.topic("saga.inbox")):
        try:
            sent = codec.decode_inbox(record.value)
        except CodecError:
            continue
        if isinstance(sent.value, FireTimer) and sent.value.timer_id == timer_id \
                and record.value is not None:
            return int(codec.codec.decode(record.value)[1]["sent_at_ms"])
    raise AssertionError(f"no TimerFired for {timer_id} in the inbox")


def _alerts(settings: Settings) -> int:
    count: int = read_report(settings, "ops")["records"]
    return count


def _with_flaky(stack: Stack) -> Stack:
    stack.start(stack.add_service("flaky", "tests.timer_workflows").name)
    return stack


def test_a_timer_pending_through_a_sigkill_fires_after_restart_once(
        settings: Settings) -> None:
    with running_stack(settings) as stack:
        stack.send("late-pick", StartSaga("order", {**order("late-pick"), "pick_timeout_s": 3}))
        stack.flush()
        stack.wait_until(lambda s: "late-pick" in s
                         and s["late-pick"].status is SagaStatus.WAITING, 60)
        stack.kill("coordinator-c1")
        pending = json.loads(run_saga(settings, "timers", "--json").stdout)
        assert pending["pending"] == 1
        time.sleep(4)  # the pick deadline passes while no coordinator runs
        assignments = stack.log_tail("coordinator-c1", 500).count("assigned partitions")
        stack.start("coordinator-c1")
        # when the restarted coordinator owns the partitions again (seen from its log, so
        # this is at or after the moment): the catch-up of invariant 5 ends there
        wait_for(lambda: stack.log_tail("coordinator-c1", 500).count("assigned partitions")
                 > assignments, 60, "the restarted coordinator to be assigned", poll_s=0.02)
        assigned_ms = int(time.time() * 1000)
        states = wait_terminal(stack, ["late-pick"])
    assert states["late-pick"].status is SagaStatus.COMPLETED
    types = _types(settings, "late-pick")
    assert types.count("TimerFired") == 1
    assert "WaitTimedOut" in types
    assert _alerts(settings) == 1
    fired = next(e for e in history(settings, "late-pick") if e.event.type_name == "TimerFired")
    deadline = states["late-pick"].timers["late-pick:2:wait:0"]
    assert fired.at_ms >= deadline.due_ms  # never early; late only by the downtime
    # invariant 5's bound: once the partition is assigned, the overdue timer fires on the
    # wheel's first turn (the tick is 20 ms; a second allows for a loaded machine). The
    # wheel's firing is the TimerFired input it sends (stamped when it was sent), not the
    # saga's decision of it, which also waits for the inbox's round trip.
    sent = _fired_sent_at_ms(settings, "late-pick:2:wait:0")
    assert sent - assigned_ms <= 1000, (sent, assigned_ms)
    assert sent <= fired.at_ms
    after = json.loads(run_saga(settings, "timers", "--json").stdout)
    assert after["pending"] == 0


def test_a_signal_after_its_timeout_is_recorded_not_acted_on(settings: Settings) -> None:
    with running_stack(settings) as stack:
        stack.send("slow-pick", StartSaga("order", {**order("slow-pick"), "pick_timeout_s": 1}))
        stack.flush()
        wait_terminal(stack, ["slow-pick"])
        stack.send("slow-pick", DeliverSignal("warehouse_picked", {"too": "late"}))
        stack.flush()
        wait_for(lambda: "InputIgnored" in _types(settings, "slow-pick"), 30,
                 "the late signal to be recorded")
    types = _types(settings, "slow-pick")
    assert types.index("WaitTimedOut") < types.index("SagaCompleted")
    assert _alerts(settings) == 1
    ignored = [e.event for e in history(settings, "slow-pick")
               if isinstance(e.event, ev.InputIgnored)]
    assert [i.reason for i in ignored] == ["signal_after_end"]


def test_a_signal_in_time_means_no_alert(settings: Settings) -> None:
    with running_stack(settings) as stack:
        stack.send("on-time", StartSaga("order", {**order("on-time"), "pick_timeout_s": 30}))
        stack.flush()
        stack.wait_until(lambda s: "on-time" in s and s["on-time"].status is SagaStatus.WAITING,
                         60)
        stack.send("on-time", DeliverSignal("warehouse_picked", None))
        stack.flush()
        states = wait_terminal(stack, ["on-time"])
    assert states["on-time"].status is SagaStatus.COMPLETED
    assert states["on-time"].timers["on-time:2:wait:0"].status == "cancelled"
    assert _alerts(settings) == 0


def test_retry_then_success_exhaustion_and_a_late_reply(settings: Settings) -> None:
    cases: dict[str, dict[str, Any]] = {
        "retry-ok": {"fail_times": 2},
        "exhausted": {"fail_times": 9, "attempts": 2},
        # the service handles commands one at a time: attempt 2 waits for the slow
        # attempt 1 to finish (3 s), well inside its own 2 s deadline, and is answered
        # with attempt 1's result: the step has an answer, its handler does not run again
        "late": {"timeout_s": 2, "slow_attempts": [1], "delay_s": 3},
    }
    with running_stack(settings, workflows=WORKFLOWS) as stack:
        _with_flaky(stack)
        for saga_id, data in cases.items():
            stack.send(saga_id, StartSaga("flaky_call", {"id": saga_id, **data}))
        stack.flush()
        states = wait_terminal(stack, list(cases), timeout_s=90)
        # the slow first attempt's reply arrives after its timeout
        wait_for(lambda: "InputIgnored" in _types(settings, "late"), 30, "the late reply")

    ok = states["retry-ok"]
    assert ok.result == {"result": {"attempt": 3}}
    retry_timers = [e.event for e in history(settings, "retry-ok")
                    if isinstance(e.event, ev.TimerScheduled) and e.event.purpose == "retry"]
    assert [t.timer_id for t in retry_timers] == ["retry-ok:1:retry:2", "retry-ok:1:retry:3"]

    exhausted = states["exhausted"]
    assert exhausted.status is SagaStatus.COMPENSATED
    assert exhausted.result == {"failed": "retries_exhausted"}
    assert exhausted.compensations[0].outcome == "ok"  # the charge was refunded

    late = states["late"]
    assert late.result == {"result": {"attempt": 1}}  # one run of the handler, two attempts
    assert late.steps[1].attempt == 2
    types = _types(settings, "late")
    assert "CommandTimedOut" in types
    ignored = [e.event for e in history(settings, "late") if isinstance(e.event, ev.InputIgnored)]
    assert [i.reason for i in ignored] == ["late_reply"]


def test_ten_thousand_timers_due_in_one_second_all_fire_once(settings: Settings) -> None:
    count = 10_000
    ids = [f"nap-{n:05d}" for n in range(count)]
    with running_stack(settings, workflows=WORKFLOWS) as stack:
        time.sleep(3)
        wake_at = int(time.time() * 1000) + 25_000
        for saga_id in ids:
            stack.send(saga_id, StartSaga("nap", {"wake_at_ms": wake_at + hash(saga_id) % 1000}))
        stack.flush()
        states = wait_terminal(stack, ids, timeout_s=180)
    assert all(states[i].status is SagaStatus.COMPLETED for i in ids)
    projections = LocalProjections(settings)
    try:
        fired = [sum(1 for e in projections.history(i) if e.event.type_name == "TimerFired")
                 for i in ids]
        lateness = sorted(
            next(e.at_ms for e in projections.history(i) if e.event.type_name == "TimerFired")
            - next(iter(states[i].timers.values())).due_ms for i in ids)
    finally:
        projections.close()
    assert fired == [1] * count
    assert lateness[0] >= 0
    print(f"\n{count} timers due within one second: lateness p50 "
          f"{lateness[count // 2]} ms, p99 {lateness[int(count * 0.99)]} ms, max "
          f"{lateness[-1]} ms (firing and deciding included)")


def test_the_timer_index_is_rebuilt_from_the_topic(settings: Settings) -> None:
    ids = [f"idx-{n}" for n in range(20)]
    with running_stack(settings, workflows=WORKFLOWS) as stack:
        # Due well after the restart: a SIGKILLed member keeps its partitions for the
        # session timeout (10 s) before the new one gets them and rebuilds the index.
        wake_at = int(time.time() * 1000) + 40_000
        for saga_id in ids:
            stack.send(saga_id, StartSaga("nap", {"wake_at_ms": wake_at}))
        stack.flush()
        wait_for(lambda: json.loads(run_saga(settings, "timers", "--json").stdout or "{}")
                 .get("pending") == 20, 60, "20 pending timers")
        stack.kill("coordinator-c1")
        shutil.rmtree(StateLayout(settings.state_dir).timer_index("c1"))
        stack.start("coordinator-c1")
        wait_for(lambda: (StateLayout(settings.state_dir).timer_index("c1") / "CURRENT")
                 .exists() and json.loads(run_saga(settings, "timers", "--json").stdout
                                          or "{}").get("pending") == 20,
                 60, "the rebuilt index to hold the 20 timers")
        states = wait_terminal(stack, ids, timeout_s=60)
    assert all(states[i].status is SagaStatus.COMPLETED for i in ids)
    assert "caught up" in stack.log_tail("coordinator-c1", 80)


def test_a_step_deadline_outlives_a_sigkill_and_a_wiped_projection(settings: Settings) -> None:
    """The deadline index lives in the projection and comes back with it from the
    journal: a step nobody answers still times out, once, after both are gone."""
    with running_stack(settings, workflows=WORKFLOWS) as stack:
        issued_ms = int(time.time() * 1000)
        stack.send("deaf", StartSaga("unanswered_call", {"timeout_s": 25}))
        stack.flush()
        stack.wait_until(lambda s: "deaf" in s and s["deaf"].in_flight() == 1, 60)
        stack.kill("coordinator-c1")
        shutil.rmtree(StateLayout(settings.state_dir).projection("c1"))
        stack.start("coordinator-c1")
        states = wait_terminal(stack, ["deaf"], timeout_s=90)
        log = stack.log_tail("coordinator-c1", 200)
    assert states["deaf"].result == {"failed": "retries_exhausted"}
    entries = history(settings, "deaf")
    assert [e.event.type_name for e in entries] == [
        "SagaStarted", "CommandIssued", "CommandTimedOut", "SagaCompleted"]
    timed_out = [e for e in entries if isinstance(e.event, ev.CommandTimedOut)]
    assert len(timed_out) == 1
    assert timed_out[0].at_ms >= issued_ms + 25_000  # never early
    assert not any(isinstance(e.event, ev.TimerScheduled) for e in entries)
    assert "rebuilt" in log or "caught up" in log
