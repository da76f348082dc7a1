"""A 3-broker embedded cluster of its own, for tests that kill and restart brokers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from saga.dev.embedded import EmbeddedKafka
from tests.kafka_harness import free_base_port


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[EmbeddedKafka, str]]:
    """(the cluster, its bootstrap servers); stopped at the end, whatever happened."""
    kafka = EmbeddedKafka(tmp_path / "kafka", base_port=free_base_port())
    state = kafka.start(3)
    try:
        yield kafka, state.bootstrap_servers
    finally:
        kafka.stop()
