"""Opening a RocksDB folder the same way for every local store of the coordinator."""

from __future__ import annotations

from pathlib import Path

from rocksdict import AccessType, Options, Rdict

from saga.state.port import ProjectionCorrupt, ProjectionLocked


def open_rdict(path: Path, *, read_only: bool, what: str, source: str) -> Rdict:
    """Open ``path`` (raw bytes keys and values); errors say whether wiping is safe.

    ``what`` names the store in messages, ``source`` the topic it is rebuilt from.
    """
    options = Options(raw_mode=True)
    options.create_if_missing(not read_only)
    try:
        if read_only:
            return Rdict(str(path), options, access_type=AccessType.read_only())
        path.parent.mkdir(parents=True, exist_ok=True)
        return Rdict(str(path), options)
    except Exception as exc:  # rocksdict raises plain Exception on open failures
        if "lock" in str(exc).lower():
            raise ProjectionLocked(
                f"the {what} at {path} is in use by another process",
                hint="another coordinator with the same --instance-id runs on this "
                "machine; give each instance its own id") from exc
        raise ProjectionCorrupt(f"cannot open the {what} at {path}: {exc}",
                                hint=f"delete the folder; it is rebuilt from {source}") from exc
