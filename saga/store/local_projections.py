"""Every coordinator projection under a state folder, read together: for the CLI's
reads on the coordinators' machine, the dev stack and the tests. Opened read-only, so
it works while the coordinators run."""

from __future__ import annotations

from collections.abc import Iterator

from saga.config import Settings
from saga.engine import events as ev
from saga.engine.state import SagaState
from saga.errors import SagaError, StoreCorrupt
from saga.layout import StateLayout
from saga.store.projection import RocksProjection


class LocalProjections:
    """Every coordinator projection under the state folder (or only ``instance``'s),
    merged: per saga, the copy with the most entries wins (after a rebalance an old
    owner may hold a stale copy)."""

    def __init__(self, settings: Settings, instance: str | None = None) -> None:
        found = StateLayout(settings.state_dir).projections()
        chosen = {i: p for i, p in found.items() if instance is None or i == instance}
        if not chosen:
            which = f"of instance {instance!r} " if instance else ""
            raise SagaError(f"no coordinator projection {which}under {settings.state_dir}",
                            hint="run `saga coordinator run` (or `make demo`) first, or set "
                            "SAGA_STATE_DIR to the coordinators' state folder; instances "
                            "here: " + (", ".join(found) or "none"))
        #: instance id -> its projection
        self.instances: dict[str, RocksProjection] = {}
        for instance_id, path in chosen.items():
            try:
                self.instances[instance_id] = RocksProjection(path, read_only=True)
            except StoreCorrupt:
                continue

    def get(self, saga_id: str) -> SagaState | None:
        found = [s for p in self.instances.values() if (s := p.get(saga_id)) is not None]
        return max(found, key=lambda s: s.seq) if found else None

    def history(self, saga_id: str) -> list[ev.Entry]:
        """The copy read furthest (a run's history is trimmed when it continues as new:
        the longest copy may be an old one)."""
        best: list[ev.Entry] = []
        for part in self.instances.values():
            entries = part.history(saga_id)
            if entries and (not best or entries[-1].seq > best[-1].seq):
                best = entries
        return best

    def states(self) -> Iterator[SagaState]:
        merged: dict[str, SagaState] = {}
        for part in self.instances.values():
            for state in part.states():
                held = merged.get(state.saga_id)
                if held is None or held.seq < state.seq:
                    merged[state.saga_id] = state
        return iter(merged.values())

    def journal_offset(self, partition: int) -> int | None:
        return None

    def close(self) -> None:
        for part in self.instances.values():
            part.close()
