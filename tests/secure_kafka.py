"""A secured embedded cluster for the tests that act as principals: one SCRAM user per
role, the ACLs `saga acl apply` gives each, and settings to connect as any of them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from saga.config import Settings
from saga.dev.embedded import EmbeddedKafka
from saga.kafka.topics import admin_client, create_topics, load_specs, service_names
from tests.cli_helpers import run_saga
from tests.kafka_harness import free_base_port


@contextmanager
def secure_cluster(folder: Path) -> Iterator[EmbeddedKafka]:
    kafka = EmbeddedKafka(folder, base_port=free_base_port(internal=True))
    kafka.start(1, secure=True)
    try:
        yield kafka
    finally:
        kafka.stop()


def as_user(cluster: EmbeddedKafka, settings: Settings, user: str) -> Settings:
    security = cluster.security_for(user)
    assert security is not None
    return settings.with_security(security)


def with_roles(cluster: EmbeddedKafka, state_dir: Path, prefix: str,
               roles: tuple[str, ...] = ("coordinator", "server", "client")) -> Settings:
    """Topics created and the ACLs of ``roles`` and of every service applied, by the
    admin through the CLI; the settings (as nobody yet) to reach them."""
    settings = Settings(bootstrap_servers=cluster.bootstrap_servers() or "",
                        state_dir=state_dir, topic_prefix=prefix, partitions=3)
    admin = as_user(cluster, settings, "admin")
    create_topics(admin_client(admin.kafka), load_specs(admin))
    grants = [*((role, role, None) for role in roles),
              *(("service", f"service-{name}", name) for name in service_names())]
    for role, user, service in grants:
        result = run_saga(admin, "acl", "apply", "--role", role, "--principal",
                          f"User:{user}", *(["--service", service] if service else []),
                          "--json")
        assert result.returncode == 0, result.stderr
    return settings


def principal_of(process: str) -> str:
    """The user a Stack process runs as: its role's (service-<name> for a service)."""
    return ("coordinator" if process.startswith("coordinator") else
            "server" if process.startswith("server") else process)


def each_as_its_role(cluster: EmbeddedKafka, base: Settings
                     ) -> Callable[[str], dict[str, str]]:
    def env(process: str) -> dict[str, str]:
        return as_user(cluster, base, principal_of(process)).child_env()
    return env
