"""The claim-check directory store keeps what it promises through a crash: a blob's
rename is synced in its folder, and a blob file already there is used only when it
holds the bytes its name (their SHA-256) says; otherwise it is written again."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from saga.store.blobs import DirectoryBlobStore

BODY = b"a claim-checked body " * 100
NAME = hashlib.sha256(BODY).hexdigest()


def _synced_dirs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The folders os.fsync is called on, in order."""
    synced: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return synced


def test_a_new_blob_is_renamed_into_place_and_its_folder_synced(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced = _synced_dirs(monkeypatch)
    store = DirectoryBlobStore(tmp_path)
    store.put(NAME, BODY)
    assert store.get(NAME) == BODY
    # The new fan-out folder's entry in the root, then the blob's entry in its folder.
    assert synced == [str(tmp_path), str(tmp_path / NAME[:2])]
    assert [p.name for p in (tmp_path / NAME[:2]).iterdir()] == [NAME]  # no scratch left

    synced.clear()
    other = b"another body"
    store.put(hashlib.sha256(other).hexdigest(), other)
    folder = tmp_path / hashlib.sha256(other).hexdigest()[:2]
    assert synced[-1] == str(folder)


def test_a_whole_blob_already_there_is_not_written_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = DirectoryBlobStore(tmp_path)
    store.put(NAME, BODY)
    before = (tmp_path / NAME[:2] / NAME).stat().st_ino
    synced = _synced_dirs(monkeypatch)
    store.put(NAME, BODY)
    assert synced == []
    assert (tmp_path / NAME[:2] / NAME).stat().st_ino == before


@pytest.mark.parametrize("damage", [BODY[:100], BODY.replace(b"claim", b"CLAIM", 1), b""],
                         ids=["cut short", "altered", "empty"])
def test_a_blob_that_does_not_match_its_digest_is_written_again(
        tmp_path: Path, damage: bytes, caplog: pytest.LogCaptureFixture) -> None:
    store = DirectoryBlobStore(tmp_path)
    (tmp_path / NAME[:2]).mkdir()
    (tmp_path / NAME[:2] / NAME).write_bytes(damage)  # what a crash or a tamperer left
    store.put(NAME, BODY)
    assert store.get(NAME) == BODY
    assert "does not match its digest" in caplog.text
