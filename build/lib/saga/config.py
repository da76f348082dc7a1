"""Typed settings with documented defaults, read from flags and ``SAGA_*`` variables.

Precedence: an explicit argument (a CLI flag) beats the environment, which beats the
default. Every field's variable is ``SAGA_`` + its upper-cased name.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from saga.errors import ConfigError

#: The checkout (or installed tree) that holds schemas/, topics/ and compose/.
PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Settings:
    """Everything a kafka-saga process needs to find its cluster, topics and state."""

    #: Kafka bootstrap servers; empty means the embedded broker (`saga kafka start`).
    bootstrap_servers: str = ""
    #: Where the embedded broker, projections and service stores keep their files.
    state_dir: Path = field(default_factory=lambda: Path(".saga"))
    #: Prepended to every topic name; empty in production, unique per test run.
    topic_prefix: str = ""
    #: Partitions of the co-partitioned saga topics (inbox, journal, timers).
    partitions: int = 6
    #: Replication factor of every topic; 3 on a 3-broker cluster.
    replication_factor: int = 1
    #: First client port of the embedded broker; node i listens on this + i.
    kafka_port: int = 29092
    #: Largest JSON body (saga input, command, reply, signal) accepted, in bytes.
    max_payload_bytes: int = 512 * 1024

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from ``SAGA_*`` variables, then ``overrides`` that are not None."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f"SAGA_{f.name.upper()}")
            if raw is None or raw == "":
                continue
            values[f.name] = _parse(f.name, f.type, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        settings.validate()
        return settings

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    def validate(self) -> None:
        if self.partitions < 1:
            raise ConfigError(f"partitions must be >= 1, got {self.partitions}",
                              hint="set SAGA_PARTITIONS to a positive integer")
        if self.replication_factor < 1:
            raise ConfigError(
                f"replication_factor must be >= 1, got {self.replication_factor}",
                hint="set SAGA_REPLICATION_FACTOR to 1 (single broker) or 3",
            )

    def topic(self, name: str) -> str:
        """The real topic name for a contract name such as ``saga.inbox``."""
        return f"{self.topic_prefix}{name}"


def _parse(name: str, annotation: object, raw: str) -> Any:
    kind = str(annotation)
    try:
        if kind == "int":
            return int(raw)
        if kind == "Path":
            return Path(raw)
    except ValueError:
        raise ConfigError(f"SAGA_{name.upper()}={raw!r} is not a whole number",
                          hint=f"set SAGA_{name.upper()} to an integer") from None
    return raw
