"""The coordinator: the stream processor that runs sagas on Kafka, exactly once.

loop.py runs it; startup.py readies what it needs; router.py says where each input goes
(dead letter, its own partition, or a decision); outbox.py maps a batch's decisions to
records; checkpoint.py commits one batch in one fixed order; ownership.py holds the
partitions owned and their positions; recovery.py catches local state up with Kafka;
timer_wheel.py fires durable timers; observe.py counts what committed; config.py tunes
one instance.
"""

from typing import TYPE_CHECKING, Any

__all__ = ["Coordinator", "CoordinatorConfig"]

if TYPE_CHECKING:
    from saga.coordinator.config import CoordinatorConfig
    from saga.coordinator.loop import Coordinator


def __getattr__(name: str) -> Any:
    # Imported on first use: `saga rebuild`'s worker processes, which need only
    # recovery.py, start half a second sooner without the loop and its telemetry.
    if name == "Coordinator":
        from saga.coordinator.loop import Coordinator

        return Coordinator
    if name == "CoordinatorConfig":
        from saga.coordinator.config import CoordinatorConfig

        return CoordinatorConfig
    raise AttributeError(f"module 'saga.coordinator' has no attribute {name!r}")
