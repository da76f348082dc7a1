"""A slow service under a backlog, with partitions moving, runs each step's handler
once. Without a bound on a consume round, one round took every command the poll
returned (up to 500, each allowed a minute): a second instance joining mid-backlog
started a rebalance that waited on that round far past its timeout, the partitions
moved to the newcomer with nothing committed, and it ran the same handlers again.
Here each round stops after SAGA_SERVICE_ROUND_BUDGET_S (or at the handler in hand
when a rebalance waits) and commits what it handled.

The shape of the issue's scenario (a 1 s handler, a backlog far longer than a round,
a second instance started mid-backlog), with 100 commands instead of 500 so that it
runs in about a minute."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from saga.config import Settings
from saga.dev.stack import Stack
from saga.engine import events as ev
from saga.engine.inputs import CommandReply
from saga.kafka import clients
from saga.kafka.records import RecordCodec
from saga.kafka.topics import (
    admin_client,
    create_topics,
    load_specs,
    service_state_spec,
    service_topic_spec,
)
from tests.counted_services import runs
from tests.system import wait_for

COMMANDS = 100


def _replies(settings: Settings, codec: RecordCodec) -> list[str]:
    out = []
    for record in clients.read_records(settings.kafka, settings.topic("saga.inbox")):
        value = codec.decode_inbox(record.value).value
        if isinstance(value, CommandReply):
            out.append(value.command_id)
    return out


def test_a_slow_backlog_moving_between_two_instances_runs_each_step_once(
        settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    counted = tmp_path / "runs.txt"
    monkeypatch.setenv("SAGA_TEST_RUNS_FILE", str(counted))
    monkeypatch.setenv("SAGA_TEST_SLOW_S", "1")
    monkeypatch.setenv("SAGA_SERVICE_ROUND_BUDGET_S", "3")
    admin = admin_client(settings.kafka)
    create_topics(admin, [*load_specs(settings), service_topic_spec(settings, "slow"),
                          service_state_spec(settings, "slow")])
    codec = RecordCodec.for_settings(settings)
    # The backlog, from outside: what a coordinator would have sent, all at once.
    producer = clients.producer(settings.kafka)
    ids = [f"r-{n:03d}:0:1" for n in range(COMMANDS)]
    for command_id in ids:
        saga_id = command_id.split(":")[0]
        producer.produce(settings.topic("slow.commands"), codec.encode_command(
            saga_id, "order", ev.CommandIssued(0, command_id, "slow", "work",
                                               ev.CommandKind.ACTION, 1, {}),
            settings.topic("saga.inbox"), 0), saga_id.encode())
    assert producer.flush(30) == 0

    stack = Stack(settings)
    first = stack.add_service("slow", "tests.counted_services", instance_id="1").name
    second = stack.add_service("slow", "tests.counted_services", instance_id="2").name
    began = time.monotonic()
    try:
        stack.start(first)
        wait_for(lambda: sum(runs(counted).values()) >= 20, 90, "a fifth of the backlog")
        stack.start(second)  # the partitions move, mid-backlog
        wait_for(lambda: len(runs(counted)) == COMMANDS, 150, "every command handled")
        wait_for(lambda: len(_replies(settings, codec)) >= COMMANDS, 60, "every reply")
        time.sleep(3)  # anything run twice would show by now
        counts = runs(counted)
        replies = _replies(settings, codec)
        logs = {name: stack.log_tail(name, 400) for name in (first, second)}
        dead = stack.dead()
    finally:
        stack.stop_all()
    took = time.monotonic() - began

    assert dead == []
    twice = {key: n for key, n in counts.items() if n != 1}
    assert twice == {}, f"handlers run more than once: {twice}"
    assert sorted(counts) == sorted(i.rsplit(":", 1)[0] for i in ids)
    assert sorted(replies) == sorted(ids)  # one committed reply per command
    for name, log in logs.items():  # both instances owned partitions
        assert "state changes restored" in log, (name, log[-2000:])
    assert "rejoining the group" not in logs[first]  # never fenced: nothing redone
    assert took < 170
