"""What several commands share: finding the cluster, loading workflows, JSON flags."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

import orjson

from saga.config import Settings
from saga.engine.workflow import WorkflowRegistry, default_registry
from saga.errors import ConfigError

if TYPE_CHECKING:
    from saga.client import BlockingSagaClient
    from saga.client.backends import HttpBackend


def bootstrapped(settings: Settings) -> Settings:
    """``settings`` with the cluster to talk to: SAGA_BOOTSTRAP_SERVERS when set, else the
    embedded broker's address (the dev broker of `saga kafka start`), and for a secured
    embedded broker its admin credentials and CA."""
    if settings.bootstrap_servers:
        return settings
    from saga.dev.embedded import EmbeddedKafka

    embedded = EmbeddedKafka(settings.state_dir, base_port=settings.kafka_port)
    servers = embedded.bootstrap_servers()
    if servers is None:
        raise ConfigError(
            "no Kafka cluster is configured",
            hint="run `saga kafka start` for the embedded broker, or set "
            "SAGA_BOOTSTRAP_SERVERS=host:port")
    security = embedded.admin_security()
    found = settings.with_(bootstrap_servers=servers)
    # Settings that name a principal of their own win over the admin's.
    configured = settings.kafka.security.protocol != "PLAINTEXT"
    return found.with_security(security) if security and not configured else found


def load_workflows(modules: str | None, settings: Settings) -> WorkflowRegistry:
    """Import the workflow modules (``--workflows``, else SAGA_WORKFLOWS, else the
    example order saga); their ``@workflow`` declarations fill the default registry."""
    for module in filter(None, (m.strip() for m in (modules or settings.workflows).split(","))):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigError(f"cannot import workflow module {module!r}: {exc}",
                              hint="check --workflows / SAGA_WORKFLOWS and PYTHONPATH") from exc
    from saga.engine.schedule import BUILTINS

    return default_registry.include(BUILTINS)


def json_arg(raw: str, flag: str) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        example = f"""{flag} '{{"id": "o-1"}}'"""
        raise ConfigError(f"{flag} is not valid JSON: {exc}",
                          hint=f"quote it for the shell, e.g. {example}") from exc


# The client (httpx, the Kafka backends) is half a second of imports: loaded by the
# commands that talk to it, not by every `saga` command (and rebuild worker) at start.
def http_api(settings: Settings) -> HttpBackend:
    """The HTTP API at SAGA_API_URL."""
    from saga.client.backends import HttpBackend

    return HttpBackend.of(settings)


def blocking_client(settings: Settings) -> BlockingSagaClient:
    """A client through SAGA_API_URL when it is set, else straight on Kafka."""
    from saga.client import BlockingSagaClient

    return BlockingSagaClient(settings=settings if settings.api_url else bootstrapped(settings))
