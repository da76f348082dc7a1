"""SagaTestEnv runs the same engine as the coordinator: the example sagas (order,
subscription, bulk order) run on real Kafka (a coordinator and the example services as
processes, tests/system.py) and in SagaTestEnv with the example services, with the same
inputs in the same order, and their journals are compared entry by entry.

What may differ is only what a wall clock or a random number decides: the times (an
entry's ``at_ms``; deadlines and due times are compared as offsets from their entry),
the payments service's random charge ids, and the order in which the children of a
bulk order report their ends to it (on Kafka, whichever child finishes first)."""

from __future__ import annotations

import asyncio
import json
import re
from collections import defaultdict
from contextlib import suppress
from typing import Any

import orjson

from saga import BlockingSagaClient
from saga.config import Settings
from saga.engine import events as ev
from saga.errors import SagaCompensated
from saga.kafka import clients
from saga.kafka.journal import read_journal
from saga.kafka.records import RecordCodec
from saga.testing import SagaTestEnv, assert_replays, load_journal
from tests.cli_helpers import run_saga
from tests.saga.testing.test_env import EXAMPLES, shop
from tests.system import STOCK, order, running_stack, wait_for, wait_terminal

SUBSCRIPTION = {"customer": "c-2", "plan": "basic", "amount_cents": 900, "period_s": 3600}
RENEWING = {"customer": "c-3", "plan": "basic", "amount_cents": 300, "period_s": 1,
            "cycles": 2}
PLAN = {"plan": "gold", "amount_cents": 1900}
BULK = {"id": "b-1", "customer": "c-1", "lines": [
    {"sku": sku, "qty": 1, "amount_cents": 1000 + n}
    for n, sku in enumerate(("sku-1", "sku-rare", "sku-1"))]}
SAGAS = ["o-ok", "o-short", "o-late", "s-1", "s-2", "b-1", "b-1-0", "b-1-1", "b-1-2"]
_CHARGE_ID = re.compile(r"ch-[0-9a-f]{12}")


def on_kafka(settings: Settings) -> dict[str, list[ev.Entry]]:
    with running_stack(settings) as stack, BlockingSagaClient(settings=settings) as client:
        client.start("order", "o-ok", order("o-ok"), wait_s=90)
        wait_for(lambda: client.status("o-ok").waiting_for == ("warehouse_picked",), 60,
                 "o-ok to wait for its pick")
        client.signal("o-ok", "warehouse_picked", {"by": "w-1"})
        client.start("order", "o-short", order("o-short", "sku-rare", qty=1, amount=700))
        client.start("order", "o-late", {**order("o-late"), "pick_timeout_s": 1})
        client.start("subscription", "s-1", SUBSCRIPTION, wait_s=60)
        wait_for(lambda: client.status("s-1").waiting_for == ("cancel_subscription",), 60,
                 "s-1 to charge and wait for its period")
        assert client.update("s-1", "change_plan", PLAN, update_id="u-1", timeout=60) == \
            {"plan": "gold", "from_cycle": 1}
        client.signal("s-1", "cancel_subscription", {})
        client.start("subscription", "s-2", RENEWING)
        client.start("bulk_order", "b-1", BULK)
        wait_terminal(stack, SAGAS)
        assert stack.dead() == []
    topic = settings.topic("saga.journal")
    journals: dict[str, list[ev.Entry]] = defaultdict(list)
    for record in read_journal(settings.kafka, topic,
                               dict.fromkeys(clients.partitions_of(settings.kafka, topic)),
                               RecordCodec.for_settings(settings)):
        if record.entry is not None:
            journals[record.entry.saga_id].append(record.entry)
    # what `saga verify-replay --dump` keeps of them is what saga.testing replays
    dump = settings.state_dir / "journal.jsonl"
    verified = run_saga(settings, "verify-replay", "--dump", str(dump), "--json")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert json.loads(verified.stdout) == {"checked": len(SAGAS), "diverging": []}
    histories = load_journal(dump)
    assert {h.saga_id: list(h.entries) for h in histories} == journals
    assert assert_replays(histories, EXAMPLES).checked == len(SAGAS)
    return journals


async def in_the_test_env() -> dict[str, list[ev.Entry]]:
    with SagaTestEnv(EXAMPLES, services=shop(STOCK)) as env:
        await env.start("order", "o-ok", order("o-ok"))
        await env.signal("o-ok", "warehouse_picked", {"by": "w-1"})
        await env.start("order", "o-short", order("o-short", "sku-rare", qty=1, amount=700))
        await env.start("order", "o-late", {**order("o-late"), "pick_timeout_s": 1})
        await env.start("subscription", "s-1", SUBSCRIPTION)
        assert await env.update("s-1", "change_plan", PLAN, update_id="u-1") == \
            {"plan": "gold", "from_cycle": 1}
        await env.signal("s-1", "cancel_subscription", {})
        await env.start("subscription", "s-2", RENEWING)
        await env.start("bulk_order", "b-1", BULK)
        for saga_id in SAGAS:
            with suppress(SagaCompensated):
                await env.result(saga_id)
        return {saga_id: env.journal(saga_id) for saga_id in SAGAS}


def test_the_example_sagas_journal_the_same_on_kafka_and_in_the_test_env(
        settings: Settings) -> None:
    # marked integration by tests/conftest.py: ``settings`` needs the session's Kafka
    kafka = on_kafka(settings)
    tested = asyncio.run(in_the_test_env())
    assert sorted(kafka) == sorted(SAGAS)
    for saga_id in SAGAS:
        assert comparable(tested[saga_id]) == comparable(kafka[saga_id]), saga_id
    print(f"\n{sum(len(kafka[s]) for s in SAGAS)} journal entries of {len(SAGAS)} sagas "
          "the same on Kafka and in SagaTestEnv")


def comparable(entries: list[ev.Entry]) -> list[tuple[int, str, Any]]:
    """The entries without what a wall clock or chance decides (see the module)."""
    rows = []
    for entry in entries:
        body: dict[str, Any] = orjson.loads(orjson.dumps(entry.event))
        if body.get("deadline_ms"):
            body["deadline_ms"] -= entry.at_ms
        if "due_ms" in body:
            body["due_ms"] -= entry.at_ms
        body.pop("trace", None)
        rows.append((entry.seq, entry.event.type_name,
                     orjson.loads(_CHARGE_ID.sub("ch-*", orjson.dumps(body).decode()))))
    ended = [n for n, row in enumerate(rows) if row[1] == "ChildEnded"]
    if ended:  # one run of notices, in whatever order the children finished
        assert ended == list(range(ended[0], ended[-1] + 1))
        notices = sorted((row[2] for row in rows[ended[0]:ended[-1] + 1]),
                         key=lambda b: b["child_id"])
        for n, body in zip(ended, notices, strict=True):
            rows[n] = (entries[0].seq + n, "ChildEnded", body)
    return rows


def test_the_comparison_ignores_only_clocks_chance_and_the_order_of_child_ends() -> None:
    """The normalisation itself, without Kafka: two runs of the test env compare equal,
    and a different entry does not."""
    first, second = asyncio.run(in_the_test_env()), asyncio.run(in_the_test_env())
    for saga_id in SAGAS:
        assert comparable(first[saga_id]) == comparable(second[saga_id])
    shuffled = list(first["b-1"])
    ends = [n for n, e in enumerate(shuffled) if isinstance(e.event, ev.ChildEnded)]
    shuffled[ends[0]], shuffled[ends[-1]] = shuffled[ends[-1]], shuffled[ends[0]]
    assert comparable(shuffled) == comparable(first["b-1"])
    changed = [*first["o-ok"][:-1], ev.Entry("o-ok", first["o-ok"][-1].seq, 0,
                                             ev.SagaFailed("no"))]
    assert comparable(changed) != comparable(first["o-ok"])
