"""The one RocksDB helper (rocksdict) under every local store: the projection, the timer
index and the services' store.

It owns what they share: opening a folder (a held lock is `StoreLocked`, never taken
for corruption), the format marker (a store written in another layout is
`StoreCorrupt`, so the caller rebuilds it), prefix scans, and the per-partition Kafka
offsets a store keeps in the same WriteBatch as its data, so data and position can
never disagree.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TypeVar

from rocksdict import (
    AccessType,
    IngestExternalFileOptions,
    Options,
    Rdict,
    SstFileWriter,
    WriteBatch,
)

from saga.errors import StoreCorrupt, StoreLocked, StoreMissing

_S = TypeVar("_S")
_FORMAT_KEY = b"m\x00format"
_SOURCE_KEY = b"m\x00source"
_OFFSET = b"o\x00"


class RocksStore:
    """A RocksDB folder with raw bytes keys and values, a format and offsets.

    ``what`` names the store in messages; ``rebuilt_from`` says where its contents come
    back from when it is wiped (None: they do not, never wipe it)."""

    def __init__(self, path: Path, *, fmt: bytes, what: str, rebuilt_from: str | None,
                 read_only: bool = False) -> None:
        self.path = path
        self.what = what
        self._rebuilt_from = rebuilt_from
        self._db = _open(path, read_only=read_only, what=what, rebuilt_from=rebuilt_from)
        stored = self._db.get(_FORMAT_KEY)
        if stored is None and not read_only and self._is_empty():
            self._db.put(_FORMAT_KEY, fmt)
        elif stored != fmt:
            self._db.close()
            raise StoreCorrupt(
                f"the {what} at {path} has format {stored!r}, this build writes {fmt!r}",
                hint=self._wipe_hint())

    def _wipe_hint(self) -> str:
        if self._rebuilt_from is None:
            return "restore it from a backup; it cannot be rebuilt"
        return f"it is rebuilt from {self._rebuilt_from} on the next start"

    def get(self, key: bytes) -> bytes | None:
        value: bytes | None = self._db.get(key)
        return value

    def scan(self, prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        """Every (key, value) whose key starts with ``prefix``, in key order, from
        ``start`` on (a key within the prefix: how a page carries on from a cursor)."""
        iterator = self._db.iter()
        iterator.seek(max(prefix, start) if start is not None else prefix)
        while iterator.valid():
            key = iterator.key()
            if not key.startswith(prefix):
                return
            yield key, iterator.value()
            iterator.next()

    def delete_between(self, batch: WriteBatch, prefix: bytes, start: bytes, end: bytes
                       ) -> None:
        """Delete, in ``batch``, each key under ``prefix`` from ``start`` up to ``end``,
        one by one. Not a range tombstone: RocksDB reads every range tombstone of a
        memtable on each read, so one per continue-as-new piled up (gigabytes for a
        saga that continued a few thousand times); point deletes are compacted away."""
        for key, _ in self.scan(prefix, start):
            if key >= end:
                return
            batch.delete(key)

    def batch(self) -> WriteBatch:
        return WriteBatch(raw_mode=True)

    def export(self, path: Path) -> int:
        """Write every key (the format and source marks aside) into an SST file at
        ``path``, in key order, for a store of the same format to ``ingest``; returns
        the keys written (none: no file, as RocksDB writes no empty SST)."""
        writer: SstFileWriter | None = None
        written = 0
        iterator = self._db.iter()
        iterator.seek_to_first()
        while iterator.valid():
            key = iterator.key()
            if key not in (_FORMAT_KEY, _SOURCE_KEY):
                if writer is None:
                    writer = SstFileWriter(Options(raw_mode=True))
                    writer.open(str(path))
                writer[key] = iterator.value()
                written += 1
            iterator.next()
        if writer is not None:
            writer.finish()
        return written

    def ingest(self, path: Path) -> None:
        """Take in an SST file ``export`` wrote, moved rather than copied: its keys
        win over any this store held. How the shares of a parallel rebuild, which
        never share a key, become one store without a write per key."""
        options = IngestExternalFileOptions()
        options.set_move_files(True)
        self._db.ingest_external_file([str(path)], options)

    def write(self, batch: WriteBatch) -> None:
        self._db.write(batch)

    # ---- where the contents come from ---------------------------------------------
    @property
    def source(self) -> str | None:
        """The cluster and topic incarnation this store was built from (``stamp``)."""
        raw = self._db.get(_SOURCE_KEY)
        return None if raw is None else bytes(raw).decode()

    def stamp(self, source: str) -> None:
        self._db.put(_SOURCE_KEY, source.encode())

    # ---- Kafka offsets, written in the same batch as the data they cover ----------
    # A store that reads more than one topic names the others' offsets by ``stream``.
    def offset(self, partition: int, stream: str = "") -> int | None:
        raw = self._db.get(_offset_prefix(stream) + str(partition).encode())
        return int(raw) if raw is not None else None

    def offsets(self, stream: str = "") -> dict[int, int]:
        prefix = _offset_prefix(stream)
        return {int(key[len(prefix):]): int(value) for key, value in self.scan(prefix)}

    @staticmethod
    def put_offsets(batch: WriteBatch, offsets: Mapping[int, int], stream: str = "") -> None:
        prefix = _offset_prefix(stream)
        for partition, offset in offsets.items():
            batch.put(prefix + str(partition).encode(), str(offset).encode())

    def close(self) -> None:
        self._db.close()

    def _is_empty(self) -> bool:
        iterator = self._db.iter()
        iterator.seek_to_first()
        return not iterator.valid()


def _offset_prefix(stream: str) -> bytes:
    return _OFFSET if not stream else b"o" + stream.encode() + b"\x00"


def wipe(path: Path) -> None:
    """Delete a store's folder: only for stores Kafka rebuilds, and never a locked one."""
    shutil.rmtree(path, ignore_errors=True)


def open_or_wipe(open_store: Callable[[Path], _S], path: Path) -> tuple[_S, bool]:
    """Open a store that Kafka can rebuild, or wipe it when unreadable (StoreCorrupt: a
    bad folder or another format) and open it empty; True when it was wiped. A locked
    store (StoreLocked) is never wiped."""
    try:
        return open_store(path), False
    except StoreCorrupt:
        wipe(path)
        return open_store(path), True


def _open(path: Path, *, read_only: bool, what: str, rebuilt_from: str | None) -> Rdict:
    if read_only and not path.exists():
        raise StoreMissing(f"no {what} at {path}",
                           hint="run the process that writes it first, or point "
                           "SAGA_STATE_DIR at its state folder")
    options = Options(raw_mode=True)
    options.create_if_missing(not read_only)
    try:
        if read_only:
            return Rdict(str(path), options, access_type=AccessType.read_only())
        path.parent.mkdir(parents=True, exist_ok=True)
        return Rdict(str(path), options)
    except Exception as exc:
        if "lock" in str(exc).lower():
            raise StoreLocked(
                f"the {what} at {path} is in use by another process",
                hint="another process with the same instance id or service name runs on "
                "this machine; give each instance its own id") from exc
        hint = (f"delete the folder; it is rebuilt from {rebuilt_from}" if rebuilt_from
                else "restore it from a backup; it cannot be rebuilt")
        raise StoreCorrupt(f"cannot open the {what} at {path}: {exc}", hint=hint) from exc
