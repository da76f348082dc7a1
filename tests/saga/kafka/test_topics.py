from __future__ import annotations

import time

import pytest
from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic

from saga.config import Settings
from saga.kafka.topics import check_topics, create_topics, load_specs


def _await_partitions(admin: AdminClient, topic: str, count: int) -> None:
    # The controller acknowledges before the brokers serve the new metadata.
    deadline = time.monotonic() + 30
    while len(admin.list_topics(topic, timeout=10).topics[topic].partitions) != count:
        assert time.monotonic() < deadline, f"{topic} never showed {count} partitions"
        time.sleep(0.1)


SERVICES = ("payments", "inventory", "shipping", "notifications", "ops")
CONTRACT_NAMES = {"saga.inbox", "saga.journal", "saga.timers", "saga.schedules", "saga.dlq",
                  *(f"{s}.commands" for s in SERVICES), *(f"{s}.state" for s in SERVICES)}


def test_specs_name_every_contract_topic(settings: Settings) -> None:
    specs = load_specs(settings)
    assert {s.contract_name for s in specs} == CONTRACT_NAMES
    assert all(s.name == settings.topic_prefix + s.contract_name for s in specs)
    saga = [s for s in specs if s.copartitioned]
    assert {s.contract_name for s in saga} == {"saga.inbox", "saga.journal", "saga.timers"}
    assert {s.partitions for s in saga} == {settings.partitions}
    by_name = {s.contract_name: s for s in specs}
    assert by_name["saga.timers"].cleanup_policy == "compact"
    assert by_name["saga.journal"].retention_ms == -1
    for service in SERVICES:  # each changelog is co-partitioned with its commands
        changelog, commands = by_name[f"{service}.state"], by_name[f"{service}.commands"]
        assert (changelog.cleanup_policy, changelog.retention_ms) == ("compact", -1)
        assert changelog.partitions == commands.partitions


def test_min_insync_replicas_follows_replication(settings: Settings) -> None:
    spec = load_specs(settings.with_(replication_factor=3))[0]
    assert spec.min_insync_replicas == 2
    assert load_specs(settings)[0].min_insync_replicas == 1


def test_create_is_idempotent_and_check_passes(admin: AdminClient, settings: Settings) -> None:
    specs = load_specs(settings)
    first = create_topics(admin, specs)
    assert set(first.values()) == {"created"}
    second = create_topics(admin, specs)
    assert set(second.values()) == {"exists"}
    assert check_topics(admin, specs) == []


def test_check_reports_a_missing_topic(admin: AdminClient, settings: Settings) -> None:
    specs = load_specs(settings)
    problems = check_topics(admin, specs)
    assert len(problems) == len(specs)
    assert any(p.startswith(f"{settings.topic('saga.inbox')} is missing (run `saga topics "
                            "create`)") for p in problems)


def test_check_catches_wrong_partitions_and_broken_copartitioning(
        admin: AdminClient, settings: Settings) -> None:
    specs = load_specs(settings)
    journal = settings.topic("saga.journal")
    create_topics(admin, specs)
    admin.create_partitions([NewPartitions(journal, settings.partitions + 2)])[journal].result(30)
    _await_partitions(admin, journal, settings.partitions + 2)
    problems = check_topics(admin, specs)
    assert f"{journal} has {settings.partitions + 2} partitions, the spec says " \
           f"{settings.partitions}" in problems
    broken = [p for p in problems if p.startswith("co-partitioning is broken")]
    assert len(broken) == 1
    assert f"{journal}={settings.partitions + 2}" in broken[0]


def test_check_catches_a_wrong_cleanup_policy(admin: AdminClient, settings: Settings) -> None:
    specs = load_specs(settings)
    timers = settings.topic("saga.timers")
    admin.create_topics([NewTopic(timers, settings.partitions, 1,
                                  config={"cleanup.policy": "delete"})])[timers].result(30)
    create_topics(admin, specs)
    problems = check_topics(admin, specs)
    assert problems == [f"{timers} has cleanup.policy=delete, the spec says compact",
                        f"{timers} has retention.ms=604800000, the spec says -1"]


@pytest.mark.parametrize("partitions", [1, 4])
def test_partition_count_is_configurable(admin: AdminClient, settings: Settings,
                                         partitions: int) -> None:
    specs = load_specs(settings.with_(partitions=partitions))
    create_topics(admin, specs)
    metadata = admin.list_topics(timeout=10)
    assert len(metadata.topics[settings.topic("saga.inbox")].partitions) == partitions
    assert check_topics(admin, specs) == []
