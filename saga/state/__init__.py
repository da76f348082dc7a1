"""The projection port: a rebuildable cache of the journal, and its implementations."""

from saga.state.memory import MemoryProjection
from saga.state.port import Projection, ProjectionCorrupt, entry_from_json, entry_to_json
from saga.state.rocks import RocksProjection

__all__ = ["MemoryProjection", "Projection", "ProjectionCorrupt", "RocksProjection",
           "entry_from_json", "entry_to_json"]
