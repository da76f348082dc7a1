"""Where every process keeps its local files, under ``Settings.state_dir``: one place
that names the folders, so the coordinator, the services, the CLI and the tools agree.

    <state_dir>/kafka/                        the embedded broker (saga kafka start)
    <state_dir>/coordinator/<id>/projection   a coordinator's projection (RocksDB)
    <state_dir>/coordinator/<id>/timers       a coordinator's timer index (RocksDB)
    <state_dir>/coordinator/<id>/.rebuild-*/  the shares of a projection being folded by
                                              worker processes (coordinator/recovery.py)
    <state_dir>/services/<name>/<instance>/store   a service instance's store (a cache
                                              of <name>.state)
    <state_dir>/server/<instance>/index       a visibility server's index (RocksDB)
    <state_dir>/logs/                         process logs of the dev stack
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

_MARKER = "CURRENT"  # RocksDB writes it once a database exists


@dataclass(frozen=True)
class StateLayout:
    root: Path

    @property
    def kafka(self) -> Path:
        return self.root / "kafka"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def coordinator(self, instance_id: str) -> Path:
        return self.root / "coordinator" / instance_id

    def projection(self, instance_id: str) -> Path:
        return self.coordinator(instance_id) / "projection"

    def timer_index(self, instance_id: str) -> Path:
        return self.coordinator(instance_id) / "timers"

    def service_store(self, service: str, instance_id: str) -> Path:
        return self.root / "services" / service / instance_id / "store"

    def visibility_index(self, instance_id: str) -> Path:
        return self.root / "server" / instance_id / "index"

    def projections(self) -> dict[str, Path]:
        """instance id -> projection folder, for every coordinator that has written one."""
        return self._stores("projection")

    def timer_indexes(self) -> dict[str, Path]:
        """instance id -> timer index folder, for every coordinator that has one."""
        return self._stores("timers")

    def _stores(self, name: str) -> dict[str, Path]:
        found = sorted((self.root / "coordinator").glob(f"*/{name}"))
        return {p.parent.name: p for p in found if (p / _MARKER).exists()}
