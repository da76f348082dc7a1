"""Fixtures shared by every test: a real Kafka cluster and names that never collide."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
from confluent_kafka.admin import AdminClient

from saga.config import Settings
from tests.kafka_harness import in_ci, kafka_cluster


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap servers of the session's Kafka (see tests/kafka_harness.py)."""
    with kafka_cluster() as bootstrap:
        yield bootstrap


@pytest.fixture(scope="session")
def admin(kafka_bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": kafka_bootstrap})


@pytest.fixture
def unique_name() -> Callable[[str], str]:
    """Factory of names no other test (or earlier run on the same cluster) uses."""

    def make(stem: str) -> str:
        return f"t{uuid.uuid4().hex[:10]}.{stem}"

    return make


@pytest.fixture
def topic_prefix() -> str:
    """A prefix that gives a test its own set of saga topics."""
    return f"t{uuid.uuid4().hex[:10]}."


@pytest.fixture
def group_id(unique_name: Callable[[str], str]) -> str:
    return unique_name("group")


@pytest.fixture
def settings(kafka_bootstrap: str, topic_prefix: str, tmp_path_factory: pytest.TempPathFactory
             ) -> Settings:
    """Settings for a test: the session's cluster, its own topics and state folder."""
    return Settings(bootstrap_servers=kafka_bootstrap, topic_prefix=topic_prefix,
                    state_dir=tmp_path_factory.mktemp("state"), partitions=3)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI a skipped test is a failure: it means something the suite needs is missing."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if in_ci() and skipped and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        if reporter:
            reporter.write_line(f"CI: {skipped} test(s) skipped; in CI that is a failure",
                                red=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that touches the Kafka fixture is an integration test, marked as such."""
    for item in items:
        if "kafka_bootstrap" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)
