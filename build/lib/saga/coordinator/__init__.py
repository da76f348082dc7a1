"""The coordinator: the stream processor that runs sagas on Kafka, exactly once."""

from saga.coordinator.service import Coordinator, CoordinatorConfig

__all__ = ["Coordinator", "CoordinatorConfig"]
