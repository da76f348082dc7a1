"""Where the tests' Kafka comes from: testcontainers, an existing cluster, or the JVM.

Order of choice:
1. ``SAGA_TEST_BOOTSTRAP`` names a running cluster: use it.
2. A Docker engine answers: start the Kafka image (``SAGA_KAFKA_IMAGE``, default the
   official ``apache/kafka:<pinned>``) through testcontainers with host networking on
   free loopback ports, and remove the container at the end.
3. Outside CI only: the embedded JVM broker on free ports in a temporary folder.
In CI (``CI=true``) a missing Docker engine is an error, never a skip.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from saga.kafka.embedded import (
    KAFKA_VERSION,
    EmbeddedKafka,
    free_port,
    kafka_env,
    kraft_properties,
    new_cluster_id,
    wait_for_brokers,
)

DEFAULT_IMAGE = f"apache/kafka:{KAFKA_VERSION}"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def docker_available() -> bool:
    try:
        import docker  # type: ignore[import-untyped]

        client = docker.from_env(timeout=5)
        client.ping()
        client.close()
        return True
    except Exception:  # noqa: BLE001 - any failure means "no usable engine"
        return False


@contextmanager
def kafka_cluster() -> Iterator[str]:
    """Yield the bootstrap servers of a Kafka cluster that lives for the ``with`` block."""
    existing = os.environ.get("SAGA_TEST_BOOTSTRAP")
    if existing:
        yield existing
        return
    if docker_available():
        with _container() as bootstrap:
            yield bootstrap
        return
    if in_ci():
        raise RuntimeError(
            "CI needs a Docker engine for the Kafka testcontainer and none answers: "
            ".ci/run starts dockerd; check /var/log/dockerd.log")
    with _embedded() as bootstrap:
        yield bootstrap


@contextmanager
def _container() -> Iterator[str]:
    os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
    from testcontainers.core.container import DockerContainer

    port, controller = free_port(), free_port()
    props = kraft_properties(1, port, controller, f"1@127.0.0.1:{controller}", replication=1,
                             log_dir="/tmp/kraft-combined-logs")
    image = os.environ.get("SAGA_KAFKA_IMAGE", DEFAULT_IMAGE)
    container = DockerContainer(image).with_kwargs(network_mode="host")
    for key, value in {**kafka_env(props), "CLUSTER_ID": new_cluster_id(),
                       "KAFKA_HEAP_OPTS": "-Xmx768m -Xms256m"}.items():
        container = container.with_env(key, value)
    container.start()
    try:
        bootstrap = f"127.0.0.1:{port}"
        try:
            wait_for_brokers(bootstrap, 1, timeout_s=90)
        except Exception:
            logs = container.get_logs()
            print("Kafka container logs:", logs[0].decode()[-3000:], logs[1].decode()[-3000:])
            raise
        yield bootstrap
    finally:
        container.stop()


@contextmanager
def _embedded() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="saga-test-kafka-") as tmp:
        kafka = EmbeddedKafka(Path(tmp), base_port=free_port())
        state = kafka.start(1)
        try:
            yield state.bootstrap_servers
        finally:
            kafka.stop()
