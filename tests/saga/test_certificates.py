"""The dev PKI's private keys are never readable by anyone but their owner, not even
for the moment between writing a key and setting its mode."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from saga.dev.certificates import issue_certificates

KEYS = ["ca.key.pem", "broker.key.pem", "broker.keystore.pem", "admin.key.pem"]


def test_every_key_file_is_0600_from_its_first_byte(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    modes_at_write: dict[str, int] = {}
    real_write = os.write

    def write(fd: int, data: bytes | memoryview) -> int:
        name = os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))
        modes_at_write.setdefault(name, stat.S_IMODE(os.fstat(fd).st_mode))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    old = os.umask(0)  # the widest the process could create files with
    try:
        files = issue_certificates(tmp_path / "pki", clients=["admin"])
    finally:
        os.umask(old)
    assert modes_at_write == dict.fromkeys(KEYS, 0o600)
    for name in KEYS:
        assert stat.S_IMODE((files.folder / name).stat().st_mode) == 0o600, name
    assert b"PRIVATE KEY" in files.broker_keystore.read_bytes()


def test_a_key_file_left_readable_is_replaced_by_a_private_one(tmp_path: Path) -> None:
    folder = tmp_path / "pki"
    folder.mkdir()
    stale = folder / "admin.key.pem"
    stale.write_bytes(b"an old key")
    stale.chmod(0o644)
    reader = stale.open("rb")  # someone who opened the old file keeps only the old bytes
    try:
        issue_certificates(folder, clients=["admin"])
        assert reader.read() == b"an old key"
    finally:
        reader.close()
    assert stat.S_IMODE(stale.stat().st_mode) == 0o600
    assert b"PRIVATE KEY" in stale.read_bytes()
