"""A claim-check blob store on a directory every process mounts (a shared volume, NFS):
one file a blob, fanned out by the digest's first two characters so no directory grows
past a few thousand entries."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from saga.errors import ClaimStoreUnavailable, StoreError


class DirectoryBlobStore:
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def _path(self, name: str) -> Path:
        if len(name) != 64 or any(c not in "0123456789abcdef" for c in name):
            raise StoreError(f"blob name {name!r} is not a SHA-256 digest",
                             hint="claim names are lowercase hex SHA-256 digests")
        return self.root / name[:2] / name

    def put(self, name: str, data: bytes) -> None:
        path = self._path(name)
        if path.exists():
            return  # content-addressed: the same name holds the same bytes
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Written aside, synced, then renamed: a reader sees the whole blob or none.
            scratch = path.with_name(f".{name}.{uuid.uuid4().hex}")
            with open(scratch, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(scratch, path)
        except OSError as exc:
            raise ClaimStoreUnavailable(
                f"cannot keep a claim-checked body in {self.root}: {exc}") from exc

    def get(self, name: str) -> bytes | None:
        try:
            return self._path(name).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ClaimStoreUnavailable(
                f"cannot read a claim-checked body from {self.root}: {exc}") from exc
