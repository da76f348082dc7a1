"""A claim-check blob store on a directory every process mounts (a shared volume, NFS):
one file a blob, fanned out by the digest's first two characters so no directory grows
past a few thousand entries."""

from __future__ import annotations

import hashlib
import logging
import os
import uuid
from pathlib import Path

from saga.errors import ClaimStoreUnavailable, StoreError

log = logging.getLogger("saga.store")


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
        try:
            if _holds(path, name):
                return  # content-addressed: the right bytes are there already
            fanned_out = not path.parent.is_dir()
            path.parent.mkdir(parents=True, exist_ok=True)
            if fanned_out:  # the new fan-out folder's own entry must survive a crash too
                _sync_dir(self.root)
            # Written aside, synced, then renamed: a reader sees the whole blob or none.
            scratch = path.with_name(f".{name}.{uuid.uuid4().hex}")
            with open(scratch, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(scratch, path)
            # The rename lives in the folder: until the folder is synced, a crash can
            # lose the blob while the record that claims it is already committed.
            _sync_dir(path.parent)
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


def _holds(path: Path, name: str) -> bool:
    """Whether the blob at ``path`` is whole and is the one its name says. A file cut
    short by a crash, or altered, is not trusted: the caller writes it again, so the
    record about to claim it does not point at bytes no reader accepts."""
    try:
        existing = path.read_bytes()
    except FileNotFoundError:
        return False
    if hashlib.sha256(existing).hexdigest() == name:
        return True
    log.warning("claim-checked blob %s does not match its digest (%d bytes): writing it "
                "again", path, len(existing))
    return False


def _sync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
