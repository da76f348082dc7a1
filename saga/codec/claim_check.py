"""Claim-check: a body too big to travel well in a Kafka record is kept in a blob store
that every process shares, and the record carries a claim on it instead: ``SGC1 |
8-byte size | SHA-256``. Content-addressed, so a retried transaction that writes the same
body again writes the same blob, and a reader checks that what it fetched is what was
claimed. The blob is stored before the record that claims it is produced, so no reader
ever holds a claim whose blob is not there yet.

Applied after encryption: with SAGA_PAYLOAD_KEYS set, the store only ever holds sealed
bodies."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol

from saga.errors import ClaimMissing, ClaimTampered, PayloadTooLarge

MARKER = b"SGC1"
_SIZE = 8
_DIGEST = 32
CLAIM_BYTES = len(MARKER) + _SIZE + _DIGEST


class BlobStore(Protocol):
    """Where claim-checked bodies live; names are lowercase hex SHA-256 digests."""

    def put(self, name: str, data: bytes) -> None:
        """Keep ``data`` under ``name``, durably, before returning; idempotent."""

    def get(self, name: str) -> bytes | None:
        """The blob, or None when the store does not hold it."""


@dataclass(frozen=True)
class ClaimCheck:
    """Bodies above ``threshold`` bytes go to ``store``; no store: every body inline."""

    store: BlobStore | None = None
    threshold: int = 64 * 1024

    def check(self, body: bytes) -> bytes:
        if self.store is None or len(body) <= self.threshold:
            return body
        digest = hashlib.sha256(body).digest()
        self.store.put(digest.hex(), body)
        return MARKER + len(body).to_bytes(_SIZE, "big") + digest

    def redeem(self, data: bytes, *, limit: int | None = None) -> bytes:
        """The body a record carries, fetched from the store when the record holds a
        claim; a claim over ``limit`` is refused without reading the blob."""
        if not data.startswith(MARKER) or len(data) != CLAIM_BYTES:
            return data
        size = int.from_bytes(data[len(MARKER):len(MARKER) + _SIZE], "big")
        name = data[len(MARKER) + _SIZE:].hex()
        if limit is not None and size > limit:
            raise PayloadTooLarge(
                f"claim-checked body {name[:12]} of {size} bytes exceeds the limit of {limit}",
                hint="raise SAGA_MAX_PAYLOAD_BYTES on this process, or send a smaller body")
        if self.store is None:
            raise ClaimMissing(
                f"a record claims body {name[:12]} from a claim-check store, and this "
                "process has none",
                hint="set SAGA_CLAIM_CHECK_DIR to the directory the writers share")
        body = self.store.get(name)
        if body is None:
            raise ClaimMissing(
                f"claim-checked body {name} is not in this process's store",
                hint="point SAGA_CLAIM_CHECK_DIR at the directory the writers use (it is "
                "shared by every process); blobs must be kept as long as the records "
                "that claim them")
        if len(body) != size or hashlib.sha256(body).digest() != data[-_DIGEST:]:
            raise ClaimTampered(f"claim-checked body {name[:12]} does not match its digest",
                                hint="the blob was altered or truncated in the store")
        return body
