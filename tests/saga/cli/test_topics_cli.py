from __future__ import annotations

import json

from saga.config import Settings
from tests.cli_helpers import run_saga


def test_topics_create_then_check_through_the_cli(settings: Settings) -> None:
    missing = run_saga(settings, "topics", "check", "--json")
    assert missing.returncode == 1
    report = json.loads(missing.stdout)
    assert report["ok"] is False
    assert any(p.startswith(f"{settings.topic('saga.inbox')} is missing (run `saga topics "
                            "create`)") for p in report["problems"])

    created = run_saga(settings, "topics", "create", "--json")
    assert created.returncode == 0, created.stderr
    assert set(json.loads(created.stdout).values()) == {"created"}
    again = run_saga(settings, "topics", "create")
    assert again.returncode == 0
    assert "exists" in again.stdout
    assert "created" not in again.stdout

    ok = run_saga(settings, "topics", "check")
    assert ok.returncode == 0, ok.stdout
    assert "all 15 topics match their specs" in ok.stdout

    wrong = run_saga(settings, "topics", "check", "--partitions", str(settings.partitions + 1))
    assert wrong.returncode == 1
    assert f"{settings.topic('saga.journal')} has {settings.partitions} partitions, the " \
           f"spec says {settings.partitions + 1}" in wrong.stdout


def test_unreachable_cluster_is_a_clear_error(settings: Settings) -> None:
    result = run_saga(settings.with_(bootstrap_servers="127.0.0.1:1"), "topics", "check",
                      timeout=120)
    assert result.returncode == 2
    assert "the Kafka cluster did not answer" in result.stderr
    assert "saga: next:" in result.stderr


def test_a_kafka_error_from_a_read_is_a_message_with_a_hint(settings: Settings) -> None:
    # Nothing listens on port 1: every read fails with a transient Kafka error.
    unreachable = settings.with_(bootstrap_servers="127.0.0.1:1")
    result = run_saga(unreachable, "dlq", "list", "--json", timeout=120)
    assert result.returncode == 2, result.stderr
    assert "run the command again" in result.stderr
    assert "Traceback" not in result.stderr
    assert "saga: error:" in result.stderr
    assert "saga: next:" in result.stderr


def test_a_missing_topic_is_a_message_with_a_hint_and_exit_2(settings: Settings) -> None:
    result = run_saga(settings, "rebuild", "--json")  # the prefix's topics do not exist
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "saga topics create" in result.stderr
