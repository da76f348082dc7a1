"""SagaTestEnv: the example sagas and their services in one process, on virtual time.

The tests are ``async def`` and ask for ``saga_env``/``saga_env_factory``: the package's
own pytest plugin runs them (no pytest-asyncio in this repository)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from saga.examples.services import SERVICES
from saga.examples.services import inventory as example_inventory

from saga import SagaStatus, hours, minutes, seconds
from saga.engine import events as ev
from saga.engine.workflow import WorkflowDefinition, WorkflowRegistry
from saga.errors import (
    BusinessError,
    SagaCancelled,
    SagaCompensated,
    SagaFailed,
    SagaNotFound,
    SagaParkedError,
    SagaStalled,
    SagaTestError,
    UnhandledCommand,
    UnknownSagaType,
    UpdateRefused,
)
from saga.service import Command, Service
from saga.testing import Reply, SagaTestEnv
from tests.saga.testing.flows import FLOWS, RUNS, greeter_patched, greeter_v1

EXAMPLES = ["saga.examples.order", "saga.examples.subscription", "saga.examples.bulk_order"]
Factory = Callable[..., SagaTestEnv]


def shop(stock: dict[str, int] | None = None) -> list[Service]:
    """The example services, with an inventory of its own (the example's defaults are
    module-wide)."""
    inventory = Service("inventory")
    inventory.handlers.update(example_inventory.handlers)
    inventory.defaults.update({f"stock/{sku}": qty for sku, qty in
                               (stock or {"sku-1": 10, "sku-rare": 0}).items()})
    return [*(s for s in SERVICES.values() if s.name != "inventory"), inventory]


def order(saga_id: str, sku: str = "sku-1", qty: int = 2, **extra: Any) -> dict[str, Any]:
    return {"id": saga_id, "customer": "c-9", "amount_cents": 4599,
            "items": [{"sku": sku, "qty": qty}], **extra}


@pytest.fixture
def env(saga_env_factory: Factory) -> SagaTestEnv:
    return saga_env_factory(EXAMPLES, services=shop())


def targets(env: SagaTestEnv, saga_id: str) -> list[str]:
    return [c.target for c in env.commands(saga_id)]


def types(env: SagaTestEnv, saga_id: str) -> list[str]:
    return [e.event.type_name for e in env.journal(saga_id)]


async def test_the_happy_path_with_its_signal(env: SagaTestEnv) -> None:
    handle = await env.start("order", "o-1", order("o-1"))
    assert handle.created
    assert handle.status is SagaStatus.WAITING
    assert handle.state.waits == {2: "warehouse_picked"}
    await handle.signal("warehouse_picked", {"by": "w-1"})
    assert await handle.result() == {"status": "completed",
                                     "tracking": env.state("o-1").result["tracking"]}
    sent = env.commands("o-1")
    assert [c.target for c in sent] == ["payments.charge", "inventory.reserve",
                                        "shipping.schedule", "notifications.send_confirmation"]
    assert [(c.command_id, c.idempotency_key) for c in sent][:2] == [
        ("o-1:0:1", "o-1:0"), ("o-1:1:1", "o-1:1")]
    assert all(c.kind is ev.CommandKind.ACTION and c.attempt == 1 for c in sent)
    assert sent[0].input == order("o-1")
    assert types(env, "o-1")[-1] == "SagaCompleted"
    assert env.now() == datetime(2026, 1, 1, tzinfo=UTC)  # nothing had to wait
    ledger = dict(env.service_state("payments").scan("ledger/"))
    assert list(ledger) == ["ledger/o-1:0"]
    assert env.service_state("inventory").get("stock/sku-1") == 8
    assert env.timers() == []


async def test_a_24_hour_signal_timeout_passes_in_virtual_time(env: SagaTestEnv) -> None:
    handle = await env.start("order", "o-1", order("o-1"))
    [wait] = handle.timers()
    assert (wait.purpose, wait.due) == (ev.TimerPurpose.WAIT,
                                        datetime(2026, 1, 2, tzinfo=UTC))
    await env.advance(hours(23))
    assert handle.status is SagaStatus.WAITING
    await env.advance(hours(1))
    assert targets(env, "o-1")[2:] == ["ops.alert", "shipping.schedule",
                                       "notifications.send_confirmation"]
    assert (await handle.result())["status"] == "completed"
    assert env.commands("o-1")[2].sent_at == datetime(2026, 1, 2, tzinfo=UTC)
    assert "WaitTimedOut" in types(env, "o-1")


async def test_result_jumps_to_the_next_timer_when_nothing_else_can_happen(
        env: SagaTestEnv) -> None:
    await env.start("order", "o-1", order("o-1"))
    assert (await env.result("o-1"))["status"] == "completed"
    assert env.now() == datetime(2026, 1, 2, tzinfo=UTC)


async def test_a_business_error_compensates(env: SagaTestEnv) -> None:
    handle = await env.start("order", "o-2", order("o-2", "sku-rare", qty=1))
    with pytest.raises(SagaCompensated) as ended:
        await handle.result()
    assert (ended.value.status, ended.value.reason) == ("COMPENSATED", "out_of_stock")
    assert ended.value.result == {"status": "cancelled", "reason": "out_of_stock"}
    refund = env.commands("o-2")[-1]
    assert (refund.target, refund.kind, refund.command_id) == (
        "payments.refund", ev.CommandKind.COMPENSATION, "o-2:0c:1")
    assert refund.input["idempotency_key"] == "o-2:0"
    entries = [e for _, e in env.service_state("payments").scan("ledger/")]
    assert [e["type"] for e in entries] == ["charge", "refund"]


async def test_a_technical_failure_is_retried_after_its_backoff(env: SagaTestEnv) -> None:
    env.mock("payments", "charge", Reply.technical_error("connection reset"),
             Reply.ok({"charge_id": "ch-1", "amount_cents": 4599}))
    handle = await env.start("order", "o-3", order("o-3"))
    await handle.signal("warehouse_picked")
    assert (await handle.result())["status"] == "completed"
    charges = env.commands("o-3", service="payments")
    assert [(c.attempt, c.command_id, c.idempotency_key) for c in charges] == [
        (1, "o-3:0:1", "o-3:0"), (2, "o-3:0:2", "o-3:0")]
    assert charges[1].sent_at - charges[0].sent_at == seconds(1)  # RetryPolicy's first wait
    failed = [e.event for e in env.journal("o-3") if isinstance(e.event, ev.CommandFailed)]
    assert failed[0].reason == "SimulatedFailure: connection reset"
    assert not failed[0].business


async def test_retries_run_out_and_the_saga_fails(env: SagaTestEnv) -> None:
    env.mock("payments", "charge", Reply.technical_error())
    handle = await env.start("order", "o-4", order("o-4"))
    with pytest.raises(SagaFailed) as ended:
        await handle.result()
    assert "retries_exhausted" in ended.value.reason
    assert [c.attempt for c in env.commands("o-4")] == [1, 2, 3]


async def test_a_step_timeout_and_a_retry(env: SagaTestEnv) -> None:
    env.mock("payments", "charge", Reply.never(), Reply.ok({"charge_id": "ch-2"}))
    handle = await env.start("order", "o-5", order("o-5"))
    assert handle.status is SagaStatus.RUNNING
    [deadline] = handle.timers()
    assert deadline.purpose is ev.TimerPurpose.TIMEOUT
    assert deadline.due == env.now() + seconds(30)  # the call's timeout=seconds(30)
    await env.advance(seconds(31))
    assert [c.attempt for c in env.commands("o-5")][:2] == [1, 2]
    assert "CommandTimedOut" in types(env, "o-5")
    assert env.status("o-5") is SagaStatus.WAITING  # charged, reserved, waiting for the pick


async def test_a_slow_reply_holds_the_retry_behind_it(env: SagaTestEnv) -> None:
    # The first attempt answers after 45 s, past its 30 s deadline: the retry (at 31 s)
    # waits behind it in the service, then gets the stored answer: one charge only.
    env.mock("payments", "charge",
             Reply.ok({"charge_id": "ch-slow"}, after=seconds(45)),
             Reply.ok({"charge_id": "ch-twice"}))
    handle = await env.start("order", "o-6", order("o-6"))
    await env.advance(seconds(45))
    journal = [e.event for e in env.journal("o-6")]
    completed = [e for e in journal if isinstance(e, ev.CommandCompleted)]
    assert completed[0].result == {"charge_id": "ch-slow"}
    assert completed[0].command_id == "o-6:0:2"
    assert any(isinstance(e, ev.InputIgnored) and e.reason == "late_reply" for e in journal)
    assert handle.status is SagaStatus.WAITING


async def test_a_cancel_compensates_newest_first(env: SagaTestEnv) -> None:
    handle = await env.start("order", "o-7", order("o-7"))
    await handle.cancel("customer changed their mind")
    with pytest.raises(SagaCancelled) as ended:
        await handle.result()
    assert ended.value.reason == "customer changed their mind"
    assert targets(env, "o-7")[2:] == ["inventory.release", "payments.refund"]
    assert env.service_state("inventory").get("stock/sku-1") == 10


async def test_a_mock_function_sees_the_command_as_the_service_would(
        env: SagaTestEnv) -> None:
    seen: list[Command] = []

    async def reserve(cmd: Command) -> Any:
        seen.append(cmd)
        if cmd.attempt == 1:
            return Reply.technical_error("warehouse offline")
        raise BusinessError("out_of_stock", "nothing left")

    env.mock("inventory", "reserve", reserve)
    with pytest.raises(SagaCompensated):
        await (await env.start("order", "o-8", order("o-8"))).result()
    assert [(c.attempt, c.idempotency_key, c.saga_type) for c in seen] == [
        (1, "o-8:1", "order"), (2, "o-8:1", "order")]
    assert seen[0].body == order("o-8")


async def test_bodies_cross_the_wire_as_json(saga_env_factory: Factory) -> None:
    env = saga_env_factory(FLOWS)
    bodies: list[Any] = []

    def debit(cmd: Command) -> Any:  # a plain function: what it returns is the result
        bodies.append(cmd.body)
        return {"at": (1, 2)}

    env.mock("bank", "debit", debit)
    env.mock("ledger", "record", Reply.ok())
    result = await env.result((await env.start("transfer", "t-1", {"amount": 5,
                                                                    "to": ("a", "b")})).saga_id)
    assert bodies[0] == {"amount": 5, "to": ["a", "b"]}  # a tuple arrives as a list
    assert result == {"status": "done", "debit": {"at": [1, 2]}}


async def test_a_30_day_wait(saga_env_factory: Factory) -> None:
    env = saga_env_factory(FLOWS)
    first = await env.start("approval", "a-1", {})
    second = await env.start("approval", "a-2", {})
    await env.advance(timedelta(days=29))
    await second.signal("approved", {"by": "ops"})
    assert await second.result() == {"approved": True, "by": "ops"}
    assert await first.result() == {"approved": False, "by": None}
    assert env.now() == datetime(2026, 1, 31, tzinfo=UTC)


async def test_a_timer_due_at_once_fires_without_the_clock_moving(
        saga_env_factory: Factory) -> None:
    env = saga_env_factory(FLOWS)
    began = env.now()
    await env.start("nap", "n-1")
    assert env.status("n-1") is SagaStatus.COMPLETED
    assert env.now() == began
    with pytest.raises(SagaTestError, match="the clock only goes forward"):
        await env.advance(-seconds(1))
    env.close()
    with pytest.raises(SagaTestError, match="the environment is closed"):
        await env.start("nap", "n-2")


async def test_a_saga_that_cannot_go_on_says_what_it_waits_for(
        saga_env_factory: Factory) -> None:
    env = saga_env_factory(FLOWS)
    await env.start("forever", "f-1")
    with pytest.raises(SagaStalled, match="waits for signal 'never'"):
        await env.result("f-1")
    manual = saga_env_factory(FLOWS, auto_advance=False)
    await manual.start("approval", "a-1")
    with pytest.raises(SagaStalled, match="the next timer is due at 2026-01-31"):
        await manual.result("a-1")


async def test_a_foreign_awaitable_parks_the_saga_until_fixed_code_resumes_it(
        saga_env_factory: Factory) -> None:
    broken, fixed = FLOWS.get("sleepy", 1), FLOWS.get("sleepy", 2)
    assert broken is not None
    assert fixed is not None
    env = saga_env_factory(WorkflowRegistry([broken]))
    await env.start("sleepy", "s-1")
    with pytest.raises(SagaParkedError, match="foreign_awaitable"):
        await env.result("s-1")
    env.deploy(WorkflowRegistry([WorkflowDefinition("sleepy", 1, fixed.fn)]))
    await env.resume("s-1")
    assert await env.result("s-1") == "slept"
    assert types(env, "s-1")[:3] == ["SagaStarted", "SagaParked", "SagaResumed"]


async def test_a_patch_keeps_running_sagas_on_their_branch(
        saga_env_factory: Factory) -> None:
    env = saga_env_factory(greeter_v1())
    env.mock("bank", "debit", Reply.ok())
    env.mock("bank", "old-step", Reply.ok(after=minutes(1)))
    env.mock("bank", "new-step", Reply.ok())
    await env.start("greeter", "g-old")
    await env.signal("g-old", "go")  # its old step is in flight when the patch deploys
    env.deploy(greeter_patched())
    await env.start("greeter", "g-new")
    await env.signal("g-new", "go")
    assert await env.result("g-new") == "patched"
    assert [c.name for c in env.commands("g-new")] == ["debit", "new-step"]
    assert await env.result("g-old") == "patched"
    assert [c.name for c in env.commands("g-old")] == ["debit", "old-step"]
    assert "PatchMarked" in types(env, "g-new")
    assert "PatchMarked" not in types(env, "g-old")
    assert env.verify_replay().ok


async def test_replaying_every_decision_finds_code_that_is_not_deterministic(
        saga_env_factory: Factory) -> None:
    for replaying in (False, True):
        RUNS[0] = 0
        env = saga_env_factory(FLOWS, replay_every_decision=replaying)
        env.mock("bank", "debit", Reply.ok())
        env.mock("ledger", "record", Reply.ok())
        await env.start("drifting", "d-1")
        await env.signal("d-1", "go")
        if replaying:
            with pytest.raises(SagaParkedError, match="non_determinism"):
                await env.result("d-1")
        else:
            assert await env.result("d-1") == "done"
            assert not env.verify_replay().ok  # and the replay check says so afterwards


async def test_a_restart_replays_and_changes_nothing(env: SagaTestEnv,
                                                     saga_env_factory: Factory) -> None:
    other = saga_env_factory(EXAMPLES, services=shop())
    for each in (env, other):
        each.mock("payments", "charge", Reply.ok({"charge_id": "ch-1"}))
        await each.start("order", "o-1", order("o-1"))
        if each is other:
            each.restart()
        await each.signal("o-1", "warehouse_picked")
        await each.result("o-1")
    assert env.journal("o-1") == other.journal("o-1")


async def test_unknown_commands_types_and_sagas_are_clear_errors(
        saga_env_factory: Factory) -> None:
    env = saga_env_factory(FLOWS)
    with pytest.raises(UnhandledCommand, match=r"sent bank\.debit .* no service of that "
                                               r"name is registered"):
        await env.start("transfer", "t-1", {})
    env.mock("bank", "debit", Reply.ok())
    with pytest.raises(UnhandledCommand, match=r"ledger\.record"):
        await env.start("transfer", "t-2", {})
    with pytest.raises(UnknownSagaType, match="no workflow named 'nope'"):
        await env.start("nope", "n-1")
    with pytest.raises(SagaNotFound):
        await env.signal("missing", "go")
    assert [d.reason for d in env.dead_letters] == ["unknown_saga_type", "unknown_saga"]
    with pytest.raises(SagaNotFound, match="started so far: t-1, t-2"):
        env.state("missing")


async def test_a_compensation_that_keeps_failing_is_reported(
        saga_env_factory: Factory) -> None:
    env = saga_env_factory(FLOWS)
    env.mock("bank", "debit", Reply.ok({"id": 1}))
    env.mock("bank", "credit", Reply.technical_error("bank closed"))
    env.mock("ledger", "record", Reply.business_error("frozen"))
    with pytest.raises(SagaStalled, match=r"bank\.credit: SimulatedFailure: bank closed"):
        await env.result((await env.start("transfer", "t-1", {})).saga_id, max_timers=20)
    assert env.status("t-1") is SagaStatus.COMPENSATING


async def test_updates_and_continue_as_new(env: SagaTestEnv) -> None:
    sub = await env.start("subscription", "s-1", {"customer": "c-1", "plan": "basic",
                                                   "amount_cents": 900,
                                                   "period_s": 30 * 86400, "cycles": 3})
    assert await sub.update("change_plan", {"plan": "gold", "amount_cents": 1900},
                            update_id="u-1") == {"plan": "gold", "from_cycle": 1}
    assert await sub.update("change_plan", {"plan": "gold", "amount_cents": 1900},
                            update_id="u-1") == {"plan": "gold", "from_cycle": 1}
    with pytest.raises(UpdateRefused, match="amount_cents must be a positive integer"):
        await sub.update("change_plan", {"plan": "free", "amount_cents": 0})
    assert await sub.result() == {"status": "ended", "cycles": 3,
                                  "last_charge": env.state("s-1").result["last_charge"]}
    charges = env.commands("s-1")
    assert [c.input["amount_cents"] for c in charges] == [900, 1900, 1900]
    assert len({c.idempotency_key for c in charges}) == 3  # each run's charge is new
    assert env.state("s-1").run == 2
    assert env.now() == datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=90)
    history = sub.history()
    assert (history[0]["type"], history[0]["run"]) == ("SagaContinued", 2)
    assert sum(e.event.type_name == "SagaContinued" for e in sub.journal()) == 2


async def test_child_sagas(env: SagaTestEnv) -> None:
    lines = [{"sku": sku, "qty": 1, "amount_cents": 100} for sku in
             ("sku-1", "sku-rare", "sku-1")]
    bulk = await env.start("bulk_order", "b-1", {"id": "b-1", "customer": "c-1",
                                                 "lines": lines})
    result = await bulk.result()
    assert (result["lines"], result["shipped"]) == (3, 2)
    assert result["outcomes"][1] == {"line": 1, "status": "failed", "reason": "compensated"}
    assert env.sagas() == ["b-1", "b-1-0", "b-1-1", "b-1-2"]
    assert env.state("b-1-1").status is SagaStatus.COMPENSATED
    assert env.state("b-1-0").parent == "b-1"
    ended = [e.event for e in env.journal("b-1") if isinstance(e.event, ev.ChildEnded)]
    assert sorted(e.child_id for e in ended) == ["b-1-0", "b-1-1", "b-1-2"]


async def test_cancelling_a_parent_cancels_its_children(env: SagaTestEnv) -> None:
    bulk = await env.start("bulk_order", "b-2", {"id": "b-2", "customer": "c-1", "lines": [
        {"sku": "sku-1", "qty": 1, "amount_cents": 100}] * 2})
    await bulk.cancel()
    with pytest.raises(SagaCancelled):
        await bulk.result()
    for child in ("b-2-0", "b-2-1"):
        with pytest.raises(SagaCancelled, match="its parent b-2 was cancelled"):
            await env.result(child)


async def test_schedules(env: SagaTestEnv) -> None:
    await env.create_schedule("hourly", cron="0 * * * *", saga_type="subscription",
                              input={"customer": "c-7", "plan": "p", "amount_cents": 100,
                                     "period_s": 0, "cycles": 1})
    await env.advance(hours(3) + minutes(1))
    runs = [s for s in env.sagas() if s.startswith("hourly@")]
    assert runs == ["hourly@20260101T010000Z", "hourly@20260101T020000Z",
                    "hourly@20260101T030000Z"]
    assert all(env.status(r) is SagaStatus.COMPLETED for r in runs)
    [entry] = env.schedules()
    assert (entry["saga_id"], entry["runs"], entry["last_run"]) == (
        "schedule:hourly", 3, "hourly@20260101T030000Z")
    await env.control_schedule("hourly", "delete")
    assert await env.result("schedule:hourly") == {"deleted": True, "runs": 3}
    assert env.schedules() == []


async def test_a_step_failure_reaches_the_workflow(saga_env_factory: Factory) -> None:
    env = saga_env_factory(FLOWS)
    env.mock("bank", "debit", Reply.ok({"id": 7}))
    env.mock("bank", "credit", Reply.ok())
    env.mock("ledger", "record", Reply.technical_error(), Reply.business_error("frozen"))
    with pytest.raises(SagaCompensated) as ended:  # it returned after ctx.compensate()
        await env.result((await env.start("transfer", "t-1", {})).saga_id)
    assert ended.value.result == {"status": "undone", "reason": "frozen"}
    assert [c.target for c in env.commands("t-1")] == [
        "bank.debit", "ledger.record", "ledger.record", "bank.credit"]


async def test_a_duplicate_start_changes_nothing(env: SagaTestEnv) -> None:
    await env.start("order", "o-1", order("o-1"))
    again = await env.start("order", "o-1", order("o-1"))
    assert not again.created
    assert types(env, "o-1")[-1] == "InputIgnored"
