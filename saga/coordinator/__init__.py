"""The coordinator: the stream processor that runs sagas on Kafka, exactly once.

loop.py runs it; startup.py readies what it needs; router.py says where each input goes
(dead letter, its own partition, or a decision); outbox.py maps a batch's decisions to
records; checkpoint.py commits one batch in one fixed order; ownership.py holds the
partitions owned and their positions; recovery.py catches local state up with Kafka;
timer_wheel.py fires durable timers; observe.py counts what committed; config.py tunes
one instance.
"""

from saga.coordinator.config import CoordinatorConfig
from saga.coordinator.loop import Coordinator

__all__ = ["Coordinator", "CoordinatorConfig"]
