"""kafka-saga: durable execution for Python on Apache Kafka.

The names in ``__all__`` are the public API; every submodule is an implementation
detail that may change between releases (tests/saga/test_public_api.py guards the list).
"""

from saga.config import Settings
from saga.errors import (
    CodecError,
    ConfigError,
    KafkaUnavailable,
    SagaError,
    TopicMismatch,
)

__all__ = [
    "CodecError",
    "ConfigError",
    "KafkaUnavailable",
    "SagaError",
    "Settings",
    "TopicMismatch",
]
