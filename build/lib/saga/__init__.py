"""kafka-saga: durable execution for Python on Apache Kafka.

The names in ``__all__`` are the public API; every submodule is an implementation
detail that may change between releases (tests/saga/test_public_api.py guards the list).
"""

from saga.config import Settings
from saga.engine.context import SagaContext
from saga.engine.lifecycle import SagaStatus
from saga.engine.workflow import RetryPolicy, hours, minutes, seconds, workflow
from saga.errors import (
    CodecError,
    ConfigError,
    KafkaUnavailable,
    NonDeterminismError,
    SagaError,
    StepFailed,
    TopicMismatch,
)

__all__ = [
    "CodecError",
    "ConfigError",
    "KafkaUnavailable",
    "NonDeterminismError",
    "RetryPolicy",
    "SagaContext",
    "SagaError",
    "SagaStatus",
    "Settings",
    "StepFailed",
    "TopicMismatch",
    "hours",
    "minutes",
    "seconds",
    "workflow",
]
