"""Finding the cluster a command talks to."""

from __future__ import annotations

from saga.config import Settings
from saga.errors import ConfigError
from saga.kafka.embedded import EmbeddedKafka


def resolve_bootstrap(settings: Settings) -> str:
    """SAGA_BOOTSTRAP_SERVERS when set, else the embedded broker's address."""
    if settings.bootstrap_servers:
        return settings.bootstrap_servers
    embedded = EmbeddedKafka(settings.state_dir, base_port=settings.kafka_port)
    servers = embedded.bootstrap_servers()
    if servers is None:
        raise ConfigError(
            "no Kafka cluster is configured",
            hint="run `saga kafka start` for the embedded broker, or set "
            "SAGA_BOOTSTRAP_SERVERS=host:port",
        )
    return servers
