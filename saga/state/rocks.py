"""The projection in RocksDB (rocksdict), one database per coordinator instance.

Keys (one column family, raw bytes; saga ids never hold NUL):
  s\\0<saga id>            the folded SagaState, JSON
  e\\0<saga id>\\0<seq>     one journal entry, JSON; seq as 10 digits so keys sort
  o\\0<partition>          the next saga.journal offset not yet applied
  m\\0format               the layout version; another value means "rebuild"
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import orjson
from rocksdict import WriteBatch

from saga.engine import events as ev
from saga.engine.state import SagaState
from saga.errors import CodecError
from saga.state.port import (
    ProjectionCorrupt,
    entry_from_json,
    entry_to_json,
    state_to_json,
)
from saga.state.rocksdb import open_rdict

#: Bumped whenever the stored state's shape changes: a projection of another format is
#: wiped and rebuilt from the journal, which is always readable.
FORMAT = b"2"
_STATE, _ENTRY, _OFFSET, _META = b"s\x00", b"e\x00", b"o\x00", b"m\x00format"


class RocksProjection:
    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = path
        self._db = open_rdict(path, read_only=read_only, what="projection",
                              source="saga.journal")
        stored = self._db.get(_META)
        if stored is None and not read_only and self._is_empty():
            self._db.put(_META, FORMAT)
        elif stored != FORMAT:
            self._db.close()
            raise ProjectionCorrupt(f"projection at {path} has format {stored!r}, this "
                                    f"build writes {FORMAT!r}",
                                    hint="the coordinator rebuilds it from saga.journal on "
                                    "its next start")

    @classmethod
    def open_or_rebuild(cls, path: Path) -> tuple[RocksProjection, bool]:
        """Open the projection, or wipe it when unreadable; True when it was wiped."""
        try:
            return cls(path), False
        except ProjectionCorrupt:
            shutil.rmtree(path, ignore_errors=True)
            return cls(path), True

    def get(self, saga_id: str) -> SagaState | None:
        raw = self._db.get(_STATE + saga_id.encode())
        if raw is None:
            return None
        try:
            return SagaState.from_json(orjson.loads(raw))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ProjectionCorrupt(f"state of saga {saga_id} is unreadable: {exc}") from exc

    def history(self, saga_id: str) -> list[ev.Entry]:
        prefix = _ENTRY + saga_id.encode() + b"\x00"
        try:
            return [entry_from_json(value) for _, value in self._scan(prefix)]
        except (orjson.JSONDecodeError, CodecError, KeyError) as exc:
            raise ProjectionCorrupt(f"history of saga {saga_id} is unreadable: {exc}") from exc

    def journal_offset(self, partition: int) -> int | None:
        raw = self._db.get(_OFFSET + str(partition).encode())
        return int(raw) if raw is not None else None

    def journal_offsets(self) -> dict[int, int]:
        return {int(key[len(_OFFSET):]): int(value) for key, value in self._scan(_OFFSET)}

    def commit(self, states: Mapping[str, SagaState], entries: Iterable[ev.Entry],
               offsets: Mapping[int, int]) -> None:
        batch = WriteBatch(raw_mode=True)
        for entry in entries:
            batch.put(_ENTRY + entry.saga_id.encode() + b"\x00" + b"%010d" % entry.seq,
                      entry_to_json(entry))
        for saga_id, state in states.items():
            batch.put(_STATE + saga_id.encode(), state_to_json(state))
        for partition, offset in offsets.items():
            batch.put(_OFFSET + str(partition).encode(), str(offset).encode())
        self._db.write(batch)

    def states(self) -> Iterator[SagaState]:
        for _, value in self._scan(_STATE):
            yield SagaState.from_json(orjson.loads(value))

    def close(self) -> None:
        self._db.close()

    def _is_empty(self) -> bool:
        iterator = self._db.iter()
        iterator.seek_to_first()
        return not iterator.valid()

    def _scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        iterator = self._db.iter()
        iterator.seek(prefix)
        while iterator.valid():
            key = iterator.key()
            if not key.startswith(prefix):
                break
            yield key, iterator.value()
            iterator.next()
