"""Claim-check without Kafka: big bodies leave the record for a shared directory and come
back whole, sealed when keys are set; a missing, altered or oversized claim is refused
with what to do."""

from __future__ import annotations

from pathlib import Path

import pytest

from saga.codec.claim_check import CLAIM_BYTES, ClaimCheck
from saga.codec.payload import new_key
from saga.config import Secret, Settings
from saga.engine.inputs import StartSaga
from saga.errors import (
    ClaimMissing,
    ClaimStoreUnavailable,
    ClaimTampered,
    PayloadTooLarge,
    StoreError,
)
from saga.kafka.records import RecordCodec
from saga.store.blobs import DirectoryBlobStore

NOTE = "handle with care; " * 2000  # ~36 KB of JSON


class CountingStore:
    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.gets = 0

    def put(self, name: str, data: bytes) -> None:
        self.blobs[name] = data

    def get(self, name: str) -> bytes | None:
        self.gets += 1
        return self.blobs.get(name)


def _codec(root: Path, **changes: object) -> RecordCodec:
    return RecordCodec.for_settings(Settings(claim_check_dir=str(root),
                                             claim_check_bytes=4096).with_(**changes))


def _blobs(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def test_a_big_body_leaves_the_record_and_comes_back(tmp_path: Path) -> None:
    codec = _codec(tmp_path)
    start = StartSaga("order", {"id": "o-1", "note": NOTE})
    record = codec.encode_inbox("o-1", start)
    assert len(record) < 200  # the envelope and a 44-byte claim
    assert NOTE[:40].encode() not in record
    (blob,) = _blobs(tmp_path)
    assert blob.parent.name == blob.name[:2]
    assert NOTE[:40].encode() in blob.read_bytes()
    assert codec.decode_inbox(record).value == start
    # A small body stays inline: no store round trip for the common case.
    small = codec.encode_inbox("o-2", StartSaga("order", {"id": "o-2"}))
    assert b'"o-2"' in small
    assert len(_blobs(tmp_path)) == 1


def test_the_same_body_is_one_blob_and_writes_are_idempotent(tmp_path: Path) -> None:
    codec = _codec(tmp_path)
    one = codec.encode_inbox("o-1", StartSaga("order", {"note": NOTE}), message_id="m")
    two = codec.encode_inbox("o-1", StartSaga("order", {"note": NOTE}), message_id="m")
    assert len(_blobs(tmp_path)) == 1
    assert codec.decode_inbox(one).value == codec.decode_inbox(two).value


def test_with_payload_keys_the_store_holds_only_sealed_bodies(tmp_path: Path) -> None:
    codec = _codec(tmp_path, payload_keys=Secret(f"k1:{new_key()}"))
    record = codec.encode_inbox("o-1", StartSaga("order", {"note": NOTE}))
    (blob,) = _blobs(tmp_path)
    assert blob.read_bytes().startswith(b"SGE2")
    assert b"handle with care" not in \
        blob.read_bytes()
    assert codec.decode_inbox(record).value.input == {"note": NOTE}  # type: ignore[union-attr]


def test_a_reader_without_the_store_or_the_blob_says_what_to_set(tmp_path: Path) -> None:
    record = _codec(tmp_path / "writer").encode_inbox("o-1", StartSaga("order", {"n": NOTE}))
    with pytest.raises(ClaimMissing) as no_store:
        RecordCodec().decode_inbox(record)
    assert "SAGA_CLAIM_CHECK_DIR" in (no_store.value.hint or "")
    with pytest.raises(ClaimMissing) as elsewhere:
        _codec(tmp_path / "another").decode_inbox(record)
    assert "not in this process's store" in elsewhere.value.message
    assert "shared" in (elsewhere.value.hint or "")


def test_an_altered_blob_is_refused(tmp_path: Path) -> None:
    codec = _codec(tmp_path)
    record = codec.encode_inbox("o-1", StartSaga("order", {"note": NOTE}))
    (blob,) = _blobs(tmp_path)
    blob.write_bytes(blob.read_bytes().replace(b"care", b"CARE", 1))
    with pytest.raises(ClaimTampered) as tampered:
        codec.decode_inbox(record)
    assert tampered.value.hint
    assert not tampered.value.retryable


def test_a_claim_over_the_limit_is_refused_without_reading_the_blob() -> None:
    store = CountingStore()
    claim = ClaimCheck(store, threshold=10).check(b"x" * 5000)
    assert len(claim) == CLAIM_BYTES
    with pytest.raises(PayloadTooLarge) as refused:
        ClaimCheck(store, threshold=10).redeem(claim, limit=4000)
    assert store.gets == 0
    assert "SAGA_MAX_PAYLOAD_BYTES" in (refused.value.hint or "")
    assert ClaimCheck(store, threshold=10).redeem(claim, limit=5000) == b"x" * 5000


def test_a_body_that_only_looks_like_a_claim_is_left_alone() -> None:
    # The marker alone, or the marker with the wrong length, is a body, not a claim.
    assert ClaimCheck(CountingStore()).redeem(b"SGC1 not a claim") == b"SGC1 not a claim"


def test_the_directory_store_takes_digests_only_and_says_when_it_cannot_write(
        tmp_path: Path) -> None:
    store = DirectoryBlobStore(tmp_path)
    with pytest.raises(StoreError):
        store.get("../../etc/passwd")
    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory")
    with pytest.raises(ClaimStoreUnavailable) as unavailable:
        DirectoryBlobStore(blocked).put("ab" * 32, b"body")
    assert unavailable.value.retryable
    assert "SAGA_CLAIM_CHECK_DIR" in (
        unavailable.value.hint or "")
    assert DirectoryBlobStore(tmp_path / "empty").get("ab" * 32) is None
