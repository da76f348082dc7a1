"""Structured logs: SAGA_LOG_FORMAT=json makes every line of stderr one JSON object with
the context it was logged in, librdkafka's own lines included."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from typing import Any

import pytest

from saga.config import KafkaConnection
from saga.kafka import clients
from saga.telemetry.logs import configure_logging, log_context, set_process_context


def test_a_json_line_carries_its_context() -> None:
    out = io.StringIO()
    configure_logging("json", stream=out)
    try:
        set_process_context(instance="c1")
        with log_context(saga_id="o-1", partition=3):
            logging.getLogger("saga.coordinator").warning("deciding %s", "reply",
                                                          extra={"offset": 7})
        logging.getLogger("saga.coordinator").info("outside")
    finally:
        configure_logging("text")
        set_process_context(instance=None)
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert {k: first[k] for k in ("level", "logger", "message", "instance", "saga_id",
                                  "partition", "offset")} == {
        "level": "warning", "logger": "saga.coordinator", "message": "deciding reply",
        "instance": "c1", "saga_id": "o-1", "partition": 3, "offset": 7}
    assert first["time"].endswith("Z")
    assert "saga_id" not in second


def test_librdkafka_speaks_through_python_logging(caplog: pytest.LogCaptureFixture) -> None:
    timeout: dict[str, Any] = {"message.timeout.ms": 1000}
    producer = clients.producer(KafkaConnection("127.0.0.1:1"), **timeout)
    producer.produce("t", b"x")
    with caplog.at_level(logging.WARNING, logger="saga.kafka"):
        producer.flush(3)  # librdkafka's queued log lines are served here
    assert any("Connect to ipv4#127.0.0.1:1 failed" in r.getMessage()
               for r in caplog.records if r.name == "saga.kafka")


def test_every_stderr_line_of_a_failing_command_is_json() -> None:
    """An unreachable cluster: no raw librdkafka line, and the command's own error ends
    the stream, all as JSON."""
    env = {**os.environ, "SAGA_LOG_FORMAT": "json", "SAGA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}
    done = subprocess.run([sys.executable, "-m", "saga.cli.main", "topics", "check"],
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.strip()]
    last = lines[-1]
    assert (last["level"], last["logger"], last["error"]) == ("error", "saga",
                                                               "KafkaUnavailable")
    assert last["hint"]
