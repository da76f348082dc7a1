"""Payload encryption: every JSON body kafka-saga writes to a topic (saga inputs,
results, signal payloads, command and reply bodies, journal event bodies, service
state, schedule entries) sealed with AES-256-GCM before it leaves the process, the way
Temporal's payload codec works, and opened on the way in.

A sealed body is ``SGE2 | len(key id) | key id | 12-byte nonce | ciphertext+tag``. The
key id travels with it, so keys rotate: new bodies are sealed with the current key,
bodies sealed with an older one open as long as that key is still listed.

A seal is bound to where the body belongs: its associated data names the key id, the
topic, the record's owner (the saga id, or a service state's key) and the field (with
the command id, sequence number or update id that tells one body of the saga from
another). A sealed body moved to another saga, field or topic does not open.

With keys set, every body must be sealed this way: a plain body, or one sealed by the
first format (``SGE1``, bound to the key id only), is refused as tampered, so a writer
cannot strip or splice a seal. While an installation moves to encryption (plain bodies
in its topics) or from SGE1, ``SAGA_PAYLOAD_ACCEPT_LEGACY=true`` reads both as before;
turn it off once nothing older is kept (docs/security.md). AES-GCM comes from
pyca/cryptography (OpenSSL underneath)."""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from saga.errors import ConfigError, PayloadKeyMissing, PayloadTampered

MARKER = b"SGE2"
#: The first format: associated data the key id only (so a seal could be spliced).
LEGACY_MARKER = b"SGE1"
_AAD_PREFIX = b"kafka-saga/seal/v2\x00"
_NONCE = 12
#: The most a seal adds to a body: marker, key id length and id, nonce, GCM tag.
SEAL_OVERHEAD = len(MARKER) + 1 + 255 + _NONCE + 16


@dataclass(frozen=True)
class SealContext:
    """Where a body belongs: the topic, the record's owner (saga id or state key) and the
    field, e.g. ``("saga.journal", "o-1", "entry:7")``."""

    topic: str
    owner: str
    field: str

    def aad(self, key_id: bytes) -> bytes:
        return b"\x00".join((_AAD_PREFIX + key_id, self.topic.encode(), self.owner.encode(),
                              self.field.encode()))


@dataclass(frozen=True)
class PayloadCipher:
    """Keys by id, and the id new bodies are sealed with; no keys: bodies stay plain."""

    keys: dict[str, bytes] = field(default_factory=dict, repr=False)
    current: str = ""
    #: Read plain and SGE1 bodies too (SAGA_PAYLOAD_ACCEPT_LEGACY): for a migration only.
    accept_legacy: bool = False

    @classmethod
    def parse(cls, listed: str, current: str = "", *, accept_legacy: bool = False
              ) -> PayloadCipher:
        """From ``id:base64key,id:base64key`` (SAGA_PAYLOAD_KEYS); the current key is
        ``current`` (SAGA_PAYLOAD_KEY_ID) or the first listed."""
        keys: dict[str, bytes] = {}
        for item in filter(None, (part.strip() for part in listed.split(","))):
            key_id, sep, encoded = item.partition(":")
            if not sep or not key_id or len(key_id.encode()) > 255:
                raise ConfigError("SAGA_PAYLOAD_KEYS holds an entry that is not ID:KEY",
                                  hint="list keys as id:base64key,id:base64key "
                                  "(`saga keys new ID` prints one)")
            try:
                key = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                key = b""
            if len(key) != 32:
                raise ConfigError(f"payload key {key_id!r} is not 32 bytes of base64",
                                  hint="use a 256-bit key, base64-encoded "
                                  "(`saga keys new ID` prints one)")
            keys[key_id] = key
        chosen = current or next(iter(keys), "")
        if chosen and chosen not in keys:
            raise ConfigError(f"SAGA_PAYLOAD_KEY_ID names {chosen!r}, which "
                              "SAGA_PAYLOAD_KEYS does not list",
                              hint="add the key to SAGA_PAYLOAD_KEYS or fix the id")
        return cls(keys, chosen, accept_legacy)

    @property
    def enabled(self) -> bool:
        return bool(self.current)

    def seal(self, body: bytes, context: SealContext) -> bytes:
        if not self.current:
            return body
        key_id = self.current.encode()
        nonce = os.urandom(_NONCE)
        sealed = AESGCM(self.keys[self.current]).encrypt(nonce, body, context.aad(key_id))
        return MARKER + bytes([len(key_id)]) + key_id + nonce + sealed

    def opens_as_is(self, data: bytes) -> bool:
        """A plain body where no key is set: ``open`` would return it unchanged, and the
        caller need not build its SealContext (once per body read)."""
        return not self.current and not data.startswith((MARKER, LEGACY_MARKER))

    def open(self, data: bytes, context: SealContext) -> bytes:
        legacy = data.startswith(LEGACY_MARKER)
        if not legacy and not data.startswith(MARKER):
            if self.current and not self.accept_legacy:
                raise PayloadTampered(
                    f"a plain body in {context.topic} ({context.field} of "
                    f"{context.owner!r}), where every body is sealed",
                    hint="it was written without the payload keys (or a seal was "
                    "stripped); while migrating to encryption set "
                    "SAGA_PAYLOAD_ACCEPT_LEGACY=true")
            return data
        if legacy and not self.accept_legacy:
            raise PayloadTampered(
                f"a body sealed in the first format (SGE1) in {context.topic}, which is "
                "not bound to its saga and field",
                hint="while records of older releases are kept, set "
                "SAGA_PAYLOAD_ACCEPT_LEGACY=true")
        try:
            size = data[len(MARKER)]
            start = len(MARKER) + 1
            if len(data) < start + size + _NONCE + 16:  # 16: the GCM tag
                raise IndexError
            key_id = data[start:start + size].decode()
        except (IndexError, UnicodeDecodeError):
            raise PayloadTampered("a sealed body with a broken header",
                                  hint="the record was damaged or not written by "
                                  "kafka-saga") from None
        key = self.keys.get(key_id)
        if key is None:
            raise PayloadKeyMissing(
                f"a body sealed with payload key {key_id!r}, which this process lacks",
                hint=f"add key {key_id!r} to SAGA_PAYLOAD_KEYS (keep old keys listed "
                "until no record sealed with them is kept)")
        nonce_at = start + size
        aad = key_id.encode() if legacy else context.aad(key_id.encode())
        try:
            return AESGCM(key).decrypt(data[nonce_at:nonce_at + _NONCE],
                                       data[nonce_at + _NONCE:], aad)
        except InvalidTag:
            raise PayloadTampered(f"a body sealed with key {key_id!r} does not open as "
                                  f"{context.field} of {context.owner!r} in {context.topic}",
                                  hint="it was altered or moved from another saga, field or "
                                  "topic, or the key listed under that id is not the one "
                                  "that sealed it") from None


def new_key() -> str:
    """A fresh 256-bit key, base64, for SAGA_PAYLOAD_KEYS."""
    return base64.b64encode(AESGCM.generate_key(bit_length=256)).decode()
