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
from importlib.resources.abc import Traversable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicCollection
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from saga import _data
from saga.config import KafkaConnection, Settings
from saga.errors import ConfigError, KafkaUnavailable, TopicError
from saga.kafka import clients
from saga.kafka.clients import is_transient

SPEC_FILE = _data.topic_specs()
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


def load_specs(settings: Settings, path: Traversable = SPEC_FILE) -> list[TopicSpec]:
    raw = _read(path)
    specs = [_spec(settings, name, entry) for name, entry in raw.get("topics", {}).items()]
    for service in service_names(path):
        specs.extend(_service_specs(settings, service, raw))
    return specs


def service_names(path: Traversable = SPEC_FILE) -> list[str]:
    """The services topics.toml names (each has a command topic and a state changelog)."""
    return list(_read(path).get("services", {}).get("names", []))


def service_topic_spec(settings: Settings, service: str,
                       path: Traversable = SPEC_FILE) -> TopicSpec:
    """The command topic of any service, listed in topics.toml or not."""
    return _service_specs(settings, service, _read(path))[0]


def service_state_spec(settings: Settings, service: str,
                       path: Traversable = SPEC_FILE) -> TopicSpec:
    """The state changelog of any service: as many partitions as its command topic."""
    return _service_specs(settings, service, _read(path))[1]


def _service_specs(settings: Settings, service: str, raw: dict[str, Any]
                   ) -> tuple[TopicSpec, TopicSpec]:
    services = raw.get("services", {})
    commands = {k: v for k, v in services.items() if k not in ("names", "state")}
    state = {**commands, **services.get("state", {})}
    return (_spec(settings, f"{service}.commands", commands),
            _spec(settings, f"{service}.state", state))


def _read(path: Traversable) -> dict[str, Any]:
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


def admin_client(kafka: KafkaConnection) -> AdminClient:
    return clients.admin(kafka, **{"socket.timeout.ms": 10000})


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
            problems.append(f"{spec.name} is missing (run `saga topics create`), or this "
                            "principal may not describe it (see `saga acl show`)")
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


def source_of(admin: AdminClient, topic: str) -> str:
    """``<cluster id>/<topic>/<topic id>``: which cluster, and which incarnation of the
    topic (a deleted and recreated topic gets a new id). Offsets mean nothing across
    either, so a local store built from another source must be rebuilt, never resumed."""
    try:
        cluster = admin.describe_cluster(request_timeout=_TIMEOUT_S).result(_TIMEOUT_S)
        described = admin.describe_topics(TopicCollection([topic]),
                                          request_timeout=_TIMEOUT_S)[topic]
        topic_id = described.result(_TIMEOUT_S).topic_id
    except TimeoutError as exc:  # the futures' own timeout: a broker away, a slow election
        raise KafkaUnavailable(f"describing {topic} timed out",
                               hint="the cluster is starting or a broker is away; try "
                               "again") from exc
    except KafkaException as exc:
        if is_transient(exc):
            raise KafkaUnavailable(f"cannot describe {topic} yet: {exc}",
                                   hint="the cluster is still starting; try again") from exc
        raise TopicError(f"cannot describe {topic}: {exc}",
                         hint="run `saga topics create`, and check SAGA_TOPIC_PREFIX") from exc
    return f"{cluster.cluster_id}/{topic}/{topic_id}"


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
