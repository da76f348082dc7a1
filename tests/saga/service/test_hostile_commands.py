"""What a service is sent from outside cannot make it run a handler for ever: a
command record with a 520 KB key, one whose saga id is longer than any saga's, a
handler whose exception message is 2 MB. Each record is answered or dead-lettered
with its reason, every letter and reply stays small, the handler runs once per
attempt, and orders keep completing beside it.

Before: the letter of a record with a 520 KB key held the key twice (over Kafka's
record limit), and the 2 MB message went into the reply and the stored reply; the
transaction failed on every try and the service sought back with no pause and ran
the handler again, for ever."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from saga.config import Settings
from saga.engine import events as ev
from saga.engine.ids import MAX_SAGA_ID_BYTES
from saga.engine.inputs import DeliverSignal, StartSaga
from saga.engine.lifecycle import SagaStatus
from saga.kafka import clients
from saga.kafka.records import TEXT_LIMIT, RecordCodec
from tests.counted_services import runs
from tests.system import order, running_stack, wait_for, wait_terminal

BIG_KEY = b"k" * (520 * 1024)


def _letters(settings: Settings, codec: RecordCodec) -> list[dict[str, Any]]:
    found = []
    for record in clients.read_records(settings.kafka, settings.topic("saga.dlq")):
        letter = codec.decode_dead_letter(record.value)
        if letter["component"] == "service:noisy":
            found.append({**letter, "record_bytes": clients.record_bytes(
                record.key, record.value, record.headers)})
    return found


def test_hostile_commands_are_answered_or_set_aside_and_run_once(
        settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    counted = tmp_path / "runs.txt"
    monkeypatch.setenv("SAGA_TEST_RUNS_FILE", str(counted))
    codec = RecordCodec.for_settings(settings)
    commands = settings.topic("noisy.commands")

    def command(saga_id: str, name: str) -> bytes:
        return codec.encode_command(saga_id, "order", ev.CommandIssued(
            0, f"{saga_id}:0:1", "noisy", name, ev.CommandKind.ACTION, 1, {}),
            settings.topic("saga.inbox"), 0)

    long_id = "L" * (MAX_SAGA_ID_BYTES + 1)
    with running_stack(settings, workflows="saga.examples.order,tests.counted_services"
                       ) as stack:
        stack.start(stack.add_service("noisy", "tests.counted_services").name)
        wait_for(lambda: "partitions [" in stack.log_tail("service-noisy", 200), 60,
                 "the noisy service to be assigned partitions")
        orders = [f"ho-{n}" for n in range(4)]
        for saga_id in orders:
            stack.send(saga_id, StartSaga("order", order(saga_id)))
            stack.send(saga_id, DeliverSignal("warehouse_picked", None))
        # A saga whose step raises a 2 MB message on each of its two attempts.
        stack.send("hx-1", StartSaga("counted.explode", {"n": 1}))
        stack.flush()
        # From outside, with a producer of its own: what the coordinator never sends.
        producer = clients.producer(settings.kafka)
        producer.produce(commands, command("hk-1", "ok"), BIG_KEY)  # handled, once
        producer.produce(commands, b"\x00 not a command", BIG_KEY)  # undecodable
        producer.produce(commands, command(long_id, "ok"), BIG_KEY)  # never run
        assert producer.flush(30) == 0

        states = wait_terminal(stack, [*orders, "hx-1"], timeout_s=120)
        wait_for(lambda: len(_letters(settings, codec)) >= 2, 60, "the two dead letters")
        wait_for(lambda: runs(counted)["hk-1:0"] == 1, 60, "the big-keyed command's run")
        before = runs(counted)
        time.sleep(5)  # a handler run for ever would show by now
        after = runs(counted)
        letters = _letters(settings, codec)
        dead = stack.dead()

    assert dead == []
    assert all(states[i].status is SagaStatus.COMPLETED for i in orders)
    # The saga got its answers: two attempts, each a capped technical error, then it
    # stopped retrying. The handler ran once per attempt, not once per try to commit.
    assert states["hx-1"].status is SagaStatus.COMPLETED
    assert states["hx-1"].result["failed"] == "retries_exhausted"
    assert after == before
    assert after["hx-1:0"] == 2
    assert after["hk-1:0"] == 1
    assert f"{long_id}:0" not in after
    step = states["hx-1"].steps[0]
    assert (step.attempt, step.reason[:22]) == (2, "RuntimeError: boom xxx")
    assert len(step.reason) == TEXT_LIMIT
    assert states["hx-1"].result["detail"].startswith("2 attempts, last: RuntimeError: boom")
    # Each letter small, with its reason and the key's size and digest.
    assert sorted(x["reason"] for x in letters) == ["saga_id_too_long", "undecodable"]
    for letter in letters:
        assert letter["record_bytes"] < 20_000
        assert [(c["field"], c["size"]) for c in letter["cut"]] == [("key", len(BIG_KEY))]
        assert letter["key"] == BIG_KEY[:256]
