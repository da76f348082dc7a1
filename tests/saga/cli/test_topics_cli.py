from __future__ import annotations

import json

from saga.config import Settings
from tests.cli_helpers import run_saga


def test_topics_create_then_check_through_the_cli(settings: Settings) -> None:
    missing = run_saga(settings, "topics", "check", "--json")
    assert missing.returncode == 1
    report = json.loads(missing.stdout)
    assert report["ok"] is False
    assert f"{settings.topic('saga.inbox')} is missing (run `saga topics create`)" \
        in report["problems"]

    created = run_saga(settings, "topics", "create", "--json")
    assert created.returncode == 0, created.stderr
    assert set(json.loads(created.stdout).values()) == {"created"}
    again = run_saga(settings, "topics", "create")
    assert again.returncode == 0
    assert "exists" in again.stdout
    assert "created" not in again.stdout

    ok = run_saga(settings, "topics", "check")
    assert ok.returncode == 0, ok.stdout
    assert "all 9 topics match their specs" in ok.stdout

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
