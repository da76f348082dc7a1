"""One command at a time, Kafka aside: each step's handler runs once whatever reaches
the service (redeliveries, retries after a timeout), a technical failure is retried for
real, and what cannot be read gets a dead letter and, where possible, a failure reply."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from saga.config import Settings
from saga.engine import events as ev
from saga.engine.ids import MAX_SAGA_ID_BYTES
from saga.engine.inputs import CommandReply, ReplyOutcome
from saga.kafka.clients import RECORD_LIMIT, record_bytes
from saga.kafka.dead_letters import KEY_PREVIEW
from saga.kafka.records import TEXT_LIMIT, RecordCodec
from saga.service import BusinessError, Command, Service
from saga.service.dispatch import Dispatcher, Outgoing
from saga.service.state import BatchState, RoundWrites
from saga.store.service_store import ServiceStore

CODEC = RecordCodec()


@dataclass(frozen=True)
class Record:
    value: bytes | None
    topic: str = "payments.commands"
    partition: int = 0
    offset: int = 0
    key: bytes | None = b"o-1"
    headers: tuple[tuple[str, bytes], ...] = ()


def command(command_id: str, name: str = "charge", body: Any = None) -> Record:
    saga_id, step, attempt = command_id.rsplit(":", 2)
    kind = ev.CommandKind.COMPENSATION if step.endswith("c") else ev.CommandKind.ACTION
    return Record(CODEC.encode_command(saga_id, "order", ev.CommandIssued(
        int(step.removesuffix("c")), command_id, "payments", name, kind, int(attempt),
        body if body is not None else {"amount_cents": 100}), "saga.inbox", 0))


def unreadable_body(saga_id: str, reply_topic: str = "saga.inbox") -> Record:
    """A command whose envelope decodes and whose body is not JSON."""
    return Record(CODEC.codec.encode("command", {
        "command_id": f"{saga_id}:0:1", "saga_id": saga_id, "saga_type": "order",
        "service": "payments", "name": "charge", "kind": "ACTION", "attempt": 1,
        "issued_at_ms": 0, "reply_topic": reply_topic, "body": b"{not json"}))


class Payments:
    def __init__(self) -> None:
        self.service = Service("payments")
        self.runs: list[str] = []
        self.fail_next: list[BaseException] = []

        @self.service.handler("charge")
        async def charge(cmd: Command) -> dict[str, Any]:
            self.runs.append(cmd.command_id)
            if self.fail_next:
                raise self.fail_next.pop(0)
            cmd.state.put(f"ledger/{cmd.idempotency_key}", {"by": cmd.command_id})
            return {"charge_id": f"ch-{len(self.runs)}", "key": cmd.idempotency_key}

        @self.service.handler("hang")
        async def hang(cmd: Command) -> None:
            await asyncio.sleep(60)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ServiceStore]:
    opened = ServiceStore(tmp_path / "store")
    yield opened
    opened.close()


def replies(out: list[Outgoing]) -> list[CommandReply]:
    decoded = [CODEC.decode_inbox(o.value).value for o in out if o.topic == "saga.inbox"]
    return [r for r in decoded if isinstance(r, CommandReply)]


def run(dispatcher: Dispatcher, store: ServiceStore, *records: Record) -> list[CommandReply]:
    """Handle ``records`` as one batch, then commit it as the runner would."""
    batch = BatchState(store)
    out = [o for r in records for o in asyncio.run(dispatcher.handle(r, batch))]
    store.apply(batch.changes.values(), {0: 1})
    return replies(out)


def test_a_redelivery_and_a_retry_after_a_timeout_get_the_first_answer(
        store: ServiceStore) -> None:
    payments = Payments()
    dispatcher = Dispatcher(payments.service, Settings(), CODEC)
    [first] = run(dispatcher, store, command("o-1:0:1"))
    # the same attempt again in the same batch, later on; then attempt 2 (the saga timed
    # the first out before its reply came): none of them runs the handler again
    again = run(dispatcher, store, command("o-1:0:1"))
    again += run(dispatcher, store, command("o-1:0:2"), command("o-1:0:2"))
    assert payments.runs == ["o-1:0:1"]
    assert [r.command_id for r in again] == ["o-1:0:1", "o-1:0:2", "o-1:0:2"]
    assert {r.result["charge_id"] for r in [first, *again]} == {"ch-1"}
    assert dispatcher.duplicates == 3
    assert store.get("ledger/o-1:0") == {"by": "o-1:0:1"}


def test_a_technical_failure_is_run_again_on_the_next_attempt_only(
        store: ServiceStore) -> None:
    payments = Payments()
    payments.fail_next.append(ConnectionError("provider down"))
    dispatcher = Dispatcher(payments.service, Settings(), CODEC)
    [failed] = run(dispatcher, store, command("o-1:0:1"))
    assert failed.outcome is ReplyOutcome.TECHNICAL_ERROR
    assert "provider down" in failed.error
    [redelivered] = run(dispatcher, store, command("o-1:0:1"))  # same attempt: same answer
    assert redelivered.outcome is ReplyOutcome.TECHNICAL_ERROR
    [retried] = run(dispatcher, store, command("o-1:0:2"))
    assert retried.outcome is ReplyOutcome.OK
    assert payments.runs == ["o-1:0:1", "o-1:0:2"]
    assert store.get("ledger/o-1:0") == {"by": "o-1:0:2"}  # the failed run wrote nothing


def test_a_business_error_is_final_for_every_attempt(store: ServiceStore) -> None:
    payments = Payments()
    payments.fail_next.append(BusinessError("card_declined"))
    dispatcher = Dispatcher(payments.service, Settings(), CODEC)
    answers = run(dispatcher, store, command("o-1:0:1"), command("o-1:0:2"))
    assert [(a.outcome, a.error) for a in answers] == [
        (ReplyOutcome.BUSINESS_ERROR, "card_declined")] * 2
    assert payments.runs == ["o-1:0:1"]


def test_compensation_and_action_of_a_step_are_two_steps(store: ServiceStore) -> None:
    payments = Payments()
    dispatcher = Dispatcher(payments.service, Settings(), CODEC)
    run(dispatcher, store, command("o-1:0:1"), command("o-1:0c:1"))
    assert payments.runs == ["o-1:0:1", "o-1:0c:1"]


def test_a_hanging_handler_times_out_as_a_technical_failure(store: ServiceStore) -> None:
    dispatcher = Dispatcher(Payments().service, Settings(handler_timeout_s=0.05), CODEC)
    [answer] = run(dispatcher, store, command("o-1:0:1", "hang"))
    assert answer.outcome is ReplyOutcome.TECHNICAL_ERROR
    assert answer.error.startswith("handler_timeout: payments.hang took more than 0.05s")


def test_unknown_and_unreadable_commands_are_answered_or_dead_lettered(
        store: ServiceStore) -> None:
    dispatcher = Dispatcher(Payments().service, Settings(), CODEC)
    [unknown] = run(dispatcher, store, command("o-1:0:1", "teleport"))
    assert unknown.outcome is ReplyOutcome.BUSINESS_ERROR
    assert unknown.error.startswith("unknown_command")
    batch = BatchState(store)
    garbage = asyncio.run(dispatcher.handle(Record(b"\x00garbage"), batch))
    assert [o.topic for o in garbage] == ["saga.dlq"]
    assert dict(garbage[0].headers)["saga.dlq.reason"] == b"undecodable"
    # a readable envelope with an unreadable body: a dead letter and a failure reply
    out = asyncio.run(dispatcher.handle(unreadable_body("o-2"), batch))
    assert [o.topic for o in out] == ["saga.dlq", "saga.inbox"]
    [failure] = replies(out)
    assert failure.error.startswith("undecodable_command")


def test_a_command_that_wants_replies_elsewhere_is_set_aside_not_run(
        store: ServiceStore) -> None:
    # A bit flipped in reply_topic ("saga.inbOx"), or a record of another installation:
    # replying there would wedge the producer on a topic that does not exist.
    payments = Payments()
    dispatcher = Dispatcher(payments.service, Settings(), CODEC)
    batch = BatchState(store)
    for reply_topic, body in (("saga.inbOx", {"amount_cents": 1}), ("elsewhere", None)):
        value = CODEC.encode_command("o-3", "order", ev.CommandIssued(
            0, "o-3:0:1", "payments", "charge", ev.CommandKind.ACTION, 1, body), reply_topic, 0)
        out = asyncio.run(dispatcher.handle(Record(value), batch))
        assert [o.topic for o in out] == ["saga.dlq"]
        assert dict(out[0].headers)["saga.dlq.reason"] == b"foreign_reply_topic"
    # the same for an undecodable body: no failure reply to a foreign topic
    out = asyncio.run(dispatcher.handle(unreadable_body("o-4", "saga.inbOx"), batch))
    assert [o.topic for o in out] == ["saga.dlq"]
    assert payments.runs == []


def test_a_batch_that_reads_another_partitions_staged_write_depends_on_it(
        store: ServiceStore) -> None:
    """The batches of one round commit side by side; one that read what another
    staged (a shared stock level) must wait for that one's commit, and only that one."""
    writes = RoundWrites()
    first = BatchState(store, writes, 0)
    first.record("o-1:0:1", "o-1:0", {"stock/sku-1": 9}, {"outcome": "OK"})
    writes.stage(0, first.changes)
    second = BatchState(store, writes, 1)
    assert second.get("stock/sku-1") == 9  # the round's newest value, not the store's
    assert second.depends_on == {0}
    third = BatchState(store, writes, 2)
    assert third.get("stock/sku-2") is None
    assert third.step_reply("o-2:0") is None
    assert third.depends_on == set()
    fourth = BatchState(store, writes, 3)
    assert dict(fourth.scan("stock/")) == {"stock/sku-1": 9}
    assert fourth.depends_on == {0}
    assert first.depends_on == set()  # its own writes are no dependency


def test_a_huge_exception_message_makes_a_small_reply_and_state_record(
        store: ServiceStore) -> None:
    """A 2 MB message made a reply (and a stored reply) Kafka refuses: the batch failed
    on every try and the handler ran for ever. The error text is cut; the handler ran
    once, and the redelivery is answered from the stored reply."""
    payments = Payments()
    payments.fail_next.append(RuntimeError("x" * (2 * 1024 * 1024)))
    dispatcher = Dispatcher(payments.service, Settings(), CODEC)
    batch = BatchState(store)
    out = asyncio.run(dispatcher.handle(command("o-1:0:1"), batch))
    [reply] = replies(out)
    assert reply.outcome is ReplyOutcome.TECHNICAL_ERROR
    assert reply.error.startswith("RuntimeError: xxx")
    assert len(reply.error) == TEXT_LIMIT
    assert all(record_bytes(o.key, o.value, o.headers) < 20_000 for o in out)
    assert all(len(CODEC.encode_state_change(c)) < 20_000 for c in batch.changes.values())
    store.apply(batch.changes.values(), {0: 1})
    assert run(dispatcher, store, command("o-1:0:1"))[0].error == reply.error
    assert payments.runs == ["o-1:0:1"]
    # a business reason is cut the same way
    payments.fail_next.append(BusinessError("r" * 100_000))
    [business] = run(dispatcher, store, command("o-2:0:1"))
    assert len(business.error) == TEXT_LIMIT


def test_a_state_write_over_the_body_limit_fails_the_step_as_a_business_error(
        store: ServiceStore) -> None:
    service = Service("payments")

    @service.handler("charge")
    async def charge(cmd: Command) -> dict[str, Any]:
        cmd.state.put("blob", "x" * (600 * 1024))
        return {}

    [answer] = run(Dispatcher(service, Settings(), CODEC), store, command("o-1:0:1"))
    assert answer.outcome is ReplyOutcome.BUSINESS_ERROR
    assert answer.error.startswith("unencodable_result")
    assert store.get("blob") is None


def test_without_a_claim_check_store_a_result_must_fit_a_kafka_record(
        store: ServiceStore) -> None:
    """SAGA_MAX_PAYLOAD_BYTES raised past Kafka's record limit with no claim-check
    store: the result's reply would be refused on every try."""
    service = Service("payments")

    @service.handler("charge")
    async def charge(cmd: Command) -> str:
        return "x" * 990_000

    settings = Settings(max_payload_bytes=4 * 1024 * 1024)
    [answer] = run(Dispatcher(service, settings, CODEC), store, command("o-1:0:1"))
    assert answer.outcome is ReplyOutcome.BUSINESS_ERROR
    assert "unencodable_result" in answer.error


def test_a_command_whose_ids_are_longer_than_any_saga_makes_is_not_run(
        store: ServiceStore) -> None:
    payments = Payments()
    dispatcher = Dispatcher(payments.service, Settings(), CODEC)
    batch = BatchState(store)
    saga_id = "s" * (MAX_SAGA_ID_BYTES + 1)
    huge = command(f"{saga_id}:0:1")
    out = asyncio.run(dispatcher.handle(Record(huge.value, key=b"k" * 520_000), batch))
    assert [o.topic for o in out] == ["saga.dlq"]
    assert dict(out[0].headers)["saga.dlq.reason"] == b"saga_id_too_long"
    # the 520 KB key is cut in the letter and as the letter's key: one small record
    assert out[0].key == b"k" * KEY_PREVIEW
    assert record_bytes(out[0].key, out[0].value, out[0].headers) < 20_000
    letter = CODEC.decode_dead_letter(out[0].value)
    assert [(c["field"], c["size"]) for c in letter["cut"]] == [("key", 520_000)]
    assert payments.runs == []


def test_a_reply_kafka_would_refuse_becomes_a_dead_letter(store: ServiceStore) -> None:
    dispatcher = Dispatcher(Payments().service, Settings(), CODEC)
    fat = Outgoing("saga.inbox", b"o-1", b"r" * (RECORD_LIMIT + 1), [])
    out = dispatcher._fitting(command("o-1:0:1"), fat)
    assert out.topic == "saga.dlq"
    assert dict(out.headers)["saga.dlq.reason"] == b"record_refused"
