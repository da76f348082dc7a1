"""kafka-saga: durable execution for Python on Apache Kafka.

The names in ``__all__`` are the public API: for workflow code, and for application code
that drives sagas (the client). ``saga.service`` is the public API for service code.
Every other submodule is an implementation detail that may change between releases
(tests/saga/test_public_api.py guards both lists).
"""

from typing import TYPE_CHECKING, Any

from saga.config import Settings
from saga.engine.context import SagaContext
from saga.engine.lifecycle import SagaStatus
from saga.engine.workflow import RetryPolicy, hours, minutes, seconds, workflow
from saga.errors import (
    AccessDenied,
    BusinessError,
    CodecError,
    ConfigError,
    KafkaUnavailable,
    NonDeterminismError,
    SagaCancelled,
    SagaCompensated,
    SagaDidNotComplete,
    SagaError,
    SagaFailed,
    SagaNotFound,
    SagaStillRunning,
    StepFailed,
    TopicMismatch,
    UnknownSagaType,
)

__all__ = [
    "AccessDenied",
    "BlockingSagaClient",
    "BlockingSagaHandle",
    "BusinessError",
    "CodecError",
    "ConfigError",
    "KafkaUnavailable",
    "NonDeterminismError",
    "RetryPolicy",
    "SagaCancelled",
    "SagaClient",
    "SagaCompensated",
    "SagaContext",
    "SagaDidNotComplete",
    "SagaError",
    "SagaFailed",
    "SagaHandle",
    "SagaInfo",
    "SagaNotFound",
    "SagaPage",
    "SagaStatus",
    "SagaStillRunning",
    "Settings",
    "StepFailed",
    "TopicMismatch",
    "UnknownSagaType",
    "hours",
    "minutes",
    "seconds",
    "workflow",
]

#: The client pulls in Kafka and HTTP: imported on first use, so that workflow code (and
#: the pure engine beneath it) does not load them.
_CLIENT_NAMES = {"BlockingSagaClient", "BlockingSagaHandle", "SagaClient", "SagaHandle",
                 "SagaInfo", "SagaPage"}

if TYPE_CHECKING:
    from saga.client import (
        BlockingSagaClient,
        BlockingSagaHandle,
        SagaClient,
        SagaHandle,
        SagaInfo,
        SagaPage,
    )


def __getattr__(name: str) -> Any:
    if name in _CLIENT_NAMES:
        import saga.client

        return getattr(saga.client, name)
    raise AttributeError(f"module 'saga' has no attribute {name!r}")
