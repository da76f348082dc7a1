"""The decider and the fold under random inputs: the example workflows (order,
subscription) driven by arbitrary sequences of replies (right, wrong, unknown ids,
any JSON), signals, timers, cancels, updates, repeated starts and operator actions.

Properties: a decision never raises (a workflow's own failure ends or parks its saga);
the state after every decision is the fold of the journal so far (state is a pure
fold); and replaying from the journal at every step takes the same path as a live
coroutine (determinism)."""

from __future__ import annotations

from typing import Any

from hypothesis import event, given
from hypothesis import strategies as st
from saga.examples import order, subscription  # noqa: F401 - registers the workflows

from saga.engine.inputs import (
    AbandonSaga,
    CancelSaga,
    CommandReply,
    DeliverSignal,
    FireTimer,
    Input,
    ReplyOutcome,
    ResumeSaga,
    StartSaga,
    UpdateSaga,
)
from saga.engine.state import fold
from saga.engine.workflow import default_registry
from tests.saga.engine.sim import Sim
from tests.saga.fuzz.budget import fuzz

_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["id", "ok", "amount_cents", "items", "sku", "qty", "plan", "x"]),
        inner, max_size=4), max_leaves=12)
ORDER = {"id": "f-1", "customer": "c-1", "amount_cents": 100,
         "items": [{"sku": "sku-1", "qty": 1}]}
SUBSCRIPTION = {"customer": "c-1", "plan": "basic", "amount_cents": 500, "period_s": 1,
                "cycles": 3}


@st.composite
def _next_input(draw: st.DrawFn, sim: Sim, saga_id: str) -> Input:
    state = sim.states.get(saga_id)
    open_ids = [c.command_id for c in sim.open_commands(saga_id)] if state else []
    timers = [t.timer_id for t in state.pending_timers()] if state else []
    kind = draw(st.sampled_from(["ok", "ok", "ok", "reply", "reply", "fire", "fire",
                                 "signal", "cancel", "start", "update", "resume",
                                 "abandon"]))
    if kind == "ok" and open_ids:  # the happy path, so sagas also get far
        return CommandReply(open_ids[0], sim.service_of(saga_id, open_ids[0]), ReplyOutcome.OK,
                            {"id": "r-1", "ok": True}, "")
    if kind in ("ok", "reply"):
        known = bool(open_ids) and draw(st.integers(0, 9)) > 0  # mostly one it issued
        command_id = draw(st.sampled_from(open_ids)) if known else draw(st.text(max_size=8))
        service = draw(st.sampled_from([sim.service_of(saga_id, command_id), "svc"]))
        return CommandReply(command_id, service, draw(st.sampled_from(list(ReplyOutcome))),
                            draw(_json), draw(st.text(max_size=12)))
    if kind == "fire":
        timer_id = draw(st.sampled_from(timers)) if timers else draw(st.text(max_size=8))
        return FireTimer(timer_id, draw(st.integers(0, 10**6)))
    if kind == "signal":
        return DeliverSignal(draw(st.sampled_from(["warehouse_picked", "warehouse_picked",
                                                   "cancel_subscription", "nope"])),
                             draw(_json))
    if kind == "cancel":
        return CancelSaga(draw(st.text(max_size=8)))
    if kind == "start":
        return StartSaga(draw(st.sampled_from(["order", "subscription", "unknown"])),
                         draw(_json))
    if kind == "update":
        return UpdateSaga(draw(st.text(max_size=6)), draw(st.sampled_from(
            ["change_plan", "nope"])), draw(_json))
    if kind == "resume":
        return ResumeSaga("fuzz")
    return AbandonSaga("fuzz", draw(st.booleans()))


@fuzz(short=100, weight=0.1)
@given(st.data(), st.sampled_from([("order", ORDER), ("subscription", SUBSCRIPTION)]),
       st.booleans())
def test_random_inputs_never_break_the_decider_the_fold_or_replay(
        data: st.DataObject, start: tuple[str, Any], good_input: bool) -> None:
    saga_type, saga_input = start
    live = Sim(default_registry)
    replaying = Sim(default_registry, always_replay=True)
    first: Input = StartSaga(saga_type, saga_input if good_input else data.draw(_json))
    sent = [first]
    for sim in (live, replaying):
        sim.send("f-1", first)
    for _ in range(data.draw(st.integers(0, 25))):
        message = data.draw(_next_input(live, "f-1"))
        sent.append(message)
        live.send("f-1", message)
        replaying.send("f-1", message)
        state = live.states.get("f-1")
        if state is not None:
            assert fold("f-1", live.history["f-1"]) == state
    assert live.history.get("f-1") == replaying.history.get("f-1"), sent
    final = live.states.get("f-1")
    event(f"{saga_type} ended {final.status if final else 'never started'}")
