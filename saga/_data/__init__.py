"""Data files that travel inside the package.

They live at the top of the repository (``schemas/``, ``topics/``, ``compose/kafka/``),
the layout the project keeps for people reading it; pyproject.toml maps each folder into
this package, so an editable install and a wheel find them at the same import path.
"""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path


def schema_dir() -> Traversable:
    """The Avro schemas, ``<kind>.v<N>.avsc``."""
    return files("saga._data.schemas")


def topic_specs() -> Traversable:
    """topics.toml, the declarative topic specs."""
    return files("saga._data.topics") / "topics.toml"


def kafka_dir() -> Path:
    """The Maven pom, log4j2 config and pinned VERSION of the embedded broker, as a real
    folder: Maven and the JVM are handed paths in it (pip installs packages unzipped)."""
    return Path(str(files("saga._data.kafka")))


def kafka_version() -> str:
    """The one pinned Apache Kafka version (compose/kafka/VERSION)."""
    return (kafka_dir() / "VERSION").read_text().strip()
