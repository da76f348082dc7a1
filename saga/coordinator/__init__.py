"""The coordinator: the stream processor that runs sagas on Kafka, exactly once.

loop.py runs it; checkpoint.py commits one batch in one fixed order; outbox.py maps a
batch's decisions to records; recovery.py catches local state up with Kafka;
timer_wheel.py fires durable timers; config.py tunes one instance.
"""

from saga.coordinator.config import CoordinatorConfig
from saga.coordinator.loop import Coordinator

__all__ = ["Coordinator", "CoordinatorConfig"]
