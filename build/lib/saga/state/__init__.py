"""The projection port: a rebuildable cache of the journal, and its implementations."""

from saga.state.memory import MemoryProjection
from saga.state.port import (
    Projection,
    ProjectionCorrupt,
    ProjectionLocked,
    entry_from_json,
    entry_to_json,
)
from saga.state.rocks import RocksProjection
from saga.state.timers import (
    MemoryTimerIndex,
    PartitionTimers,
    PendingTimer,
    RocksTimerIndex,
    TimerIndex,
)

__all__ = ["MemoryProjection", "MemoryTimerIndex", "PartitionTimers", "PendingTimer",
           "Projection", "ProjectionCorrupt", "ProjectionLocked", "RocksProjection",
           "RocksTimerIndex", "TimerIndex", "entry_from_json", "entry_to_json"]
