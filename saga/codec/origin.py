"""Who wrote an inbox record: HMAC-SHA256 origin tags, so that writing saga.inbox (which
every client may) is not enough to answer another's step or fire a saga's timer.

Kafka's ACLs say who may write a topic, not who wrote a record in it, and the inbox is
shared by clients, services and the coordinator. So each record an input may only come
from one writer carries a tag, in the ``saga.origin.mac`` header, over the topic it was
written to and its whole value (which names the saga, the command and the service):

* a reply is tagged with its service's key;
* what the coordinator sends itself (a fired timer, a child's start, a child's end) is
  tagged with the coordinator's own key.

One secret, the origin key (SAGA_ORIGIN_KEY), is held by the coordinator only. Every
other key is derived from it with HKDF (pyca/cryptography), one per service name, so a
service is given only its own (SAGA_REPLY_KEY, printed by `saga keys reply-key NAME`): a
compromised service can answer its own steps and nothing else, and a client, holding no
key, can answer none. Without an origin key nothing is tagged or checked, as before.

HMAC comes from the standard library (hashlib's OpenSSL), HKDF from pyca/cryptography.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass, field
from functools import cached_property

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from saga.errors import ConfigError

#: What a tag binds besides the value: which topic, so a record cannot be moved.
_SEPARATOR = b"\x00"
_KEY_BYTES = 32
#: HKDF info of the coordinator's own key and of each service's reply key.
_COORDINATOR_INFO = b"kafka-saga/origin/v1/coordinator"
_SERVICE_INFO = b"kafka-saga/origin/v1/service/"


def _decode_key(encoded: str, variable: str) -> bytes:
    try:
        key = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != _KEY_BYTES:
        raise ConfigError(f"{variable} is not 32 bytes of base64",
                          hint="`saga keys origin` prints a new origin key; `saga keys "
                          "reply-key NAME` prints a service's key from it")
    return key


def _derive(master: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=_KEY_BYTES, salt=None,
                info=info).derive(master)


def service_key(master: bytes, service: str) -> bytes:
    """The reply key of ``service``, derived from the origin key."""
    return _derive(master, _SERVICE_INFO + service.encode())


def tag(key: bytes, topic: str, value: bytes) -> bytes:
    mac = hmac.new(key, topic.encode() + _SEPARATOR, hashlib.sha256)
    mac.update(value)  # not concatenated: a value may be near a megabyte
    return mac.digest()


@dataclass(frozen=True)
class OriginKeys:
    """The keys one process holds: the origin key (the coordinator: it checks every tag
    and tags what it sends itself), or one service's reply key, or none (nothing is
    tagged or checked)."""

    master: bytes = field(default=b"", repr=False)
    #: A service's own key, when it was given one rather than the origin key.
    reply: bytes = field(default=b"", repr=False)
    _services: dict[str, bytes] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def parse(cls, origin_key: str = "", reply_key: str = "") -> OriginKeys:
        """From SAGA_ORIGIN_KEY and SAGA_REPLY_KEY (base64, 32 bytes each)."""
        master = _decode_key(origin_key, "SAGA_ORIGIN_KEY") if origin_key else b""
        reply = _decode_key(reply_key, "SAGA_REPLY_KEY") if reply_key else b""
        return cls(master, reply)

    @property
    def checks(self) -> bool:
        """Whether inputs that must be tagged are refused without a good tag."""
        return bool(self.master)

    def service(self, name: str) -> bytes:
        """``name``'s reply key; b"" when this process cannot know it."""
        if not self.master:
            return self.reply
        key = self._services.get(name)
        if key is None:
            key = self._services[name] = service_key(self.master, name)
        return key

    def coordinator(self) -> bytes:
        return self._own

    @cached_property
    def _own(self) -> bytes:
        # Not in _services under "": a reply naming service "" (any inbox writer may
        # send one) cached service ""'s key there first, and the coordinator then
        # refused its own timers and tagged with a key `saga keys reply-key ""` prints.
        return _derive(self.master, _COORDINATOR_INFO) if self.master else b""

    def tag_reply(self, service: str, topic: str, value: bytes) -> bytes | None:
        key = self.service(service)
        return tag(key, topic, value) if key else None

    def tag_own(self, topic: str, value: bytes) -> bytes | None:
        key = self.coordinator()
        return tag(key, topic, value) if key else None

    def reply_is_from(self, service: str, topic: str, value: bytes, mac: bytes | None
                      ) -> bool:
        return mac is not None and hmac.compare_digest(
            mac, tag(self.service(service), topic, value))

    def is_own(self, topic: str, value: bytes, mac: bytes | None) -> bool:
        return mac is not None and hmac.compare_digest(
            mac, tag(self.coordinator(), topic, value))


def new_origin_key() -> str:
    """A fresh origin key, base64, for SAGA_ORIGIN_KEY."""
    import secrets

    return base64.b64encode(secrets.token_bytes(_KEY_BYTES)).decode()


def encoded_service_key(origin_key: str, service: str) -> str:
    """``service``'s reply key (base64) from the origin key (base64)."""
    return base64.b64encode(service_key(_decode_key(origin_key, "SAGA_ORIGIN_KEY"),
                                        service)).decode()
