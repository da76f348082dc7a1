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
import random
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from saga.dev.embedded import (
    KAFKA_VERSION,
    EmbeddedKafka,
    dev_jvm_opts,
    free_port,
    kafka_env,
    kraft_properties,
    new_cluster_id,
    wait_for_brokers,
)

DEFAULT_IMAGE = f"apache/kafka:{KAFKA_VERSION}"


def free_base_port(*, internal: bool = False) -> int:
    """A base port whose three client ports (base+0..2) and controller ports
    (base+100..102) are free, and the internal ones (base+200..202) of a secured
    cluster when asked. Outside the kernel's ephemeral range: while a broker is down
    its clients keep reconnecting, each from a new ephemeral port, and one of them
    took the port of a broker the chaos test was about to restart."""
    offsets = [0, 1, 2, 100, 101, 102, *([200, 201, 202] if internal else [])]
    low, high = _ephemeral_range()
    start, stop = (20000, low - 300) if low - 300 > 20000 else (high + 1, 65535 - 300)
    for _ in range(50):
        base = random.randrange(start, stop)
        if all(_bindable(base + offset) for offset in offsets):
            return base
    raise RuntimeError("no free port range found")


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


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
                       "KAFKA_HEAP_OPTS": "-Xmx768m -Xms256m",
                       "KAFKA_OPTS": " ".join(dev_jvm_opts())}.items():
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
