"""The Python client of kafka-saga (re-exported by ``saga``)."""

from saga.client.client import (
    BlockingSagaClient,
    BlockingSagaHandle,
    SagaClient,
    SagaHandle,
    SagaInfo,
    SagaPage,
)

__all__ = ["BlockingSagaClient", "BlockingSagaHandle", "SagaClient", "SagaHandle",
           "SagaInfo", "SagaPage"]
