"""Declarative topic specs (topics/topics.toml) and the admin work that applies them.

`create` is idempotent: an existing topic is left alone and reported as such.
`check` compares the cluster with the specs and lists every difference in plain words:
a missing topic, a wrong partition count, broken co-partitioning of the saga topics, a
wrong cleanup policy, retention, replication or min.insync.replicas.
"""

from __future__ import annotations

import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from saga.config import PROJECT_ROOT, Settings
from saga.errors import ConfigError, KafkaUnavailable, TopicError
from saga.kafka.clients import is_transient

SPEC_FILE = PROJECT_ROOT / "topics" / "topics.toml"
_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class TopicSpec:
    contract_name: str  # the name in DESIGN.md, e.g. saga.inbox
    name: str  # the real name, with the configured prefix
    partitions: int
    replication_factor: int
    cleanup_policy: str
    retention_ms: int
    copartitioned: bool = False

    @property
    def min_insync_replicas(self) -> int:
        return 2 if self.replication_factor >= 3 else 1

    def config(self) -> dict[str, str]:
        return {
            "cleanup.policy": self.cleanup_policy,
            "retention.ms": str(self.retention_ms),
            "min.insync.replicas": str(self.min_insync_replicas),
        }


def load_specs(settings: Settings, path: Path = SPEC_FILE) -> list[TopicSpec]:
    raw = _read(path)
    specs = [_spec(settings, name, entry) for name, entry in raw.get("topics", {}).items()]
    services = raw.get("services", {})
    for service in services.get("names", []):
        specs.append(_spec(settings, f"{service}.commands", services))
    return specs


def service_topic_spec(settings: Settings, service: str, path: Path = SPEC_FILE) -> TopicSpec:
    """The command topic of any service, listed in topics.toml or not."""
    return _spec(settings, f"{service}.commands", _read(path).get("services", {}))


def _read(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read topic specs {path}: {exc}") from exc


def command_topic(settings: Settings, service: str) -> str:
    return settings.topic(f"{service}.commands")


def _spec(settings: Settings, name: str, entry: dict[str, Any]) -> TopicSpec:
    partitions = entry.get("partitions", 1)
    return TopicSpec(
        contract_name=name,
        name=settings.topic(name),
        partitions=settings.partitions if partitions == "saga" else int(partitions),
        replication_factor=settings.replication_factor,
        cleanup_policy=str(entry.get("cleanup_policy", "delete")),
        retention_ms=int(entry.get("retention_ms", 604800000)),
        copartitioned=bool(entry.get("copartitioned", False)),
    )


def admin_client(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 10000})


def create_topics(admin: AdminClient, specs: list[TopicSpec]) -> dict[str, str]:
    """Create what is missing; return ``{topic: "created" | "exists"}``."""
    existing = _metadata(admin).topics
    outcome = {s.name: "exists" for s in specs if s.name in existing}
    wanted = [
        NewTopic(s.name, num_partitions=s.partitions, replication_factor=s.replication_factor,
                 config=s.config())
        for s in specs if s.name not in existing
    ]
    if not wanted:
        return outcome
    for topic, future in admin.create_topics(wanted, operation_timeout=_TIMEOUT_S).items():
        try:
            future.result(timeout=_TIMEOUT_S)
            outcome[topic] = "created"
        except KafkaException as exc:
            error = exc.args[0]
            if error.code() == KafkaError.TOPIC_ALREADY_EXISTS:  # a racing creator won
                outcome[topic] = "exists"
                continue
            raise TopicError(f"creating {topic} failed: {error.str()}",
                             hint=_hint_for(error)) from exc
    _await_visible(admin, [s.name for s in specs])
    return outcome


def _await_visible(admin: AdminClient, names: list[str]) -> None:
    """Wait until the brokers serve metadata for ``names``.

    The controller acknowledges a creation before every broker has applied it; a reader
    that asks at once could still be told the topic does not exist.
    """
    deadline = time.monotonic() + _TIMEOUT_S
    while time.monotonic() < deadline:
        topics = _metadata(admin).topics
        if all(n in topics and topics[n].error is None and topics[n].partitions
               for n in names):
            return
        time.sleep(0.1)
    raise TopicError(f"created topics did not appear in metadata within {_TIMEOUT_S:.0f}s",
                     hint="check the brokers' health with `saga kafka status`")


def check_topics(admin: AdminClient, specs: list[TopicSpec]) -> list[str]:
    """Every way the cluster differs from ``specs``, in plain words; empty when equal."""
    metadata = _metadata(admin)
    problems: list[str] = []
    present = [s for s in specs if s.name in metadata.topics]
    for spec in specs:
        if spec.name not in metadata.topics:
            problems.append(f"{spec.name} is missing (run `saga topics create`)")
            continue
        partitions = metadata.topics[spec.name].partitions
        if len(partitions) != spec.partitions:
            problems.append(f"{spec.name} has {len(partitions)} partitions, "
                            f"the spec says {spec.partitions}")
        replication = min((len(p.replicas) for p in partitions.values()), default=0)
        if replication != spec.replication_factor:
            problems.append(f"{spec.name} has replication factor {replication}, "
                            f"the spec says {spec.replication_factor}")
    copartitioned = [s for s in present if s.copartitioned]
    counts = {s.name: len(metadata.topics[s.name].partitions) for s in copartitioned}
    if len(set(counts.values())) > 1:
        listing = ", ".join(f"{name}={n}" for name, n in counts.items())
        problems.append(f"co-partitioning is broken: {listing}; these topics must have the "
                        "same partition count so one instance owns a saga's inbox, journal "
                        "and timers")
    problems.extend(_config_problems(admin, present))
    return problems


def _config_problems(admin: AdminClient, specs: list[TopicSpec]) -> list[str]:
    if not specs:
        return []
    by_name = {s.name: s for s in specs}
    resources = [ConfigResource(ConfigResource.Type.TOPIC, s.name) for s in specs]
    problems = []
    for resource, future in admin.describe_configs(resources).items():
        try:
            entries = future.result(timeout=_TIMEOUT_S)
        except KafkaException as exc:
            if is_transient(exc):
                raise KafkaUnavailable(f"cannot read the config of {resource.name} yet: "
                                       f"{exc}", hint="the cluster is still starting or "
                                       "electing a controller; try again") from exc
            raise TopicError(f"cannot read the config of {resource.name}: {exc}") from exc
        spec = by_name[resource.name]
        for key, wanted in spec.config().items():
            actual = entries[key].value if key in entries else None
            if actual != wanted:
                problems.append(f"{spec.name} has {key}={actual}, the spec says {wanted}")
    return problems


def _metadata(admin: AdminClient) -> Any:
    try:
        return admin.list_topics(timeout=_TIMEOUT_S)
    except KafkaException as exc:
        raise KafkaUnavailable(
            f"the Kafka cluster did not answer: {exc}",
            hint="check SAGA_BOOTSTRAP_SERVERS, or start the embedded broker with "
            "`saga kafka start`",
        ) from exc


def _hint_for(error: KafkaError) -> str:
    if error.code() == KafkaError.INVALID_REPLICATION_FACTOR:
        return "the cluster has fewer brokers than SAGA_REPLICATION_FACTOR; lower it"
    if error.code() == KafkaError.POLICY_VIOLATION:
        return "a broker policy refused the topic config; see the broker log"
    return "see the broker log"
