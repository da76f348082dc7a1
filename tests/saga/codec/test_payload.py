"""Payload encryption: sealed bodies open with their key, rotation keeps old keys
working, a missing key or an altered body says what is wrong."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from saga.codec.payload import LEGACY_MARKER, MARKER, PayloadCipher, SealContext, new_key
from saga.config import Secret, Settings
from saga.engine import events as ev
from saga.errors import ConfigError, PayloadKeyMissing, PayloadTampered
from saga.kafka.records import RecordCodec

K1, K2 = new_key(), new_key()
ORDER = {"id": "o-1", "customer": "c-private-42", "amount_cents": 4599}


HERE = SealContext("saga.journal", "o-1", "entry:3")


def test_a_sealed_body_hides_its_content_and_opens_with_its_key() -> None:
    cipher = PayloadCipher.parse(f"k1:{K1}")
    sealed = cipher.seal(b'{"customer":"c-private-42"}', HERE)
    assert sealed.startswith(MARKER + b"\x02k1")
    assert b"c-private-42" not in sealed
    assert cipher.open(sealed, HERE) == b'{"customer":"c-private-42"}'
    assert cipher.seal(b"same", HERE) != cipher.seal(b"same", HERE)  # a fresh nonce each time


def test_rotation_seals_with_the_current_key_and_opens_old_ones() -> None:
    old = PayloadCipher.parse(f"k1:{K1}")
    rotated = PayloadCipher.parse(f"k1:{K1},k2:{K2}", "k2")
    before = old.seal(b"before", HERE)
    after = rotated.seal(b"after", HERE)
    assert after.startswith(MARKER + b"\x02k2")
    assert rotated.open(before, HERE) == b"before"
    with pytest.raises(PayloadKeyMissing) as missing:
        old.open(after, HERE)
    assert "'k2'" in missing.value.message
    assert "SAGA_PAYLOAD_KEYS" in (missing.value.hint or "")


@pytest.mark.parametrize("elsewhere", [SealContext("saga.journal", "o-2", "entry:3"),
                                       SealContext("saga.journal", "o-1", "entry:4"),
                                       SealContext("saga.inbox", "o-1", "entry:3"),
                                       SealContext("other.saga.journal", "o-1", "entry:3")])
def test_a_seal_moved_to_another_saga_field_or_topic_does_not_open(
        elsewhere: SealContext) -> None:
    cipher = PayloadCipher.parse(f"k1:{K1}")
    with pytest.raises(PayloadTampered, match="does not open") as moved:
        cipher.open(cipher.seal(b'{"amount_cents":1}', HERE), elsewhere)
    assert "moved from another saga, field or topic" in (moved.value.hint or "")


def test_with_keys_a_plain_or_first_format_body_is_refused_unless_migrating() -> None:
    # As the first format sealed: the key id its only associated data.
    nonce = b"n" * 12
    legacy = LEGACY_MARKER + b"\x02k1" + nonce + AESGCM(base64.b64decode(K1)).encrypt(
        nonce, b'{"a":1}', b"k1")
    strict = PayloadCipher.parse(f"k1:{K1}")
    with pytest.raises(PayloadTampered, match="a plain body") as stripped:
        strict.open(b'{"a":1}', HERE)
    assert "SAGA_PAYLOAD_ACCEPT_LEGACY" in (stripped.value.hint or "")
    with pytest.raises(PayloadTampered, match="first format"):
        strict.open(legacy, HERE)
    migrating = PayloadCipher.parse(f"k1:{K1}", accept_legacy=True)
    assert migrating.open(b'{"a":1}', HERE) == b'{"a":1}'
    assert migrating.open(legacy, HERE) == b'{"a":1}'
    # without keys, bodies are plain and read as they are
    assert PayloadCipher().open(b'{"a":1}', HERE) == b'{"a":1}'


def test_only_a_plain_body_with_no_key_set_is_read_as_it_is() -> None:
    """The codec skips building a seal's context for these; every other body goes
    through open, which refuses or opens it."""
    sealed = PayloadCipher.parse(f"k1:{K1}").seal(b'{"a":1}', HERE)
    assert PayloadCipher().opens_as_is(b'{"a":1}')
    assert not PayloadCipher().opens_as_is(sealed)
    assert not PayloadCipher().opens_as_is(LEGACY_MARKER + b"\x02k1")
    assert not PayloadCipher.parse(f"k1:{K1}").opens_as_is(b'{"a":1}')
    keyed = RecordCodec.for_settings(Settings(payload_keys=Secret(f"k1:{K1}")))
    record = keyed.encode_entry(ev.Entry("o-1", 1, 1_000, ev.SagaStarted("order", 1, ORDER)))
    with pytest.raises(PayloadKeyMissing, match="k1"):  # a reader without the key
        RecordCodec().decode_entry(record)


def test_an_altered_body_or_a_wrong_key_does_not_open() -> None:
    cipher = PayloadCipher.parse(f"k1:{K1}")
    sealed = bytearray(cipher.seal(b"amount 4599", HERE))
    sealed[-1] ^= 1
    with pytest.raises(PayloadTampered):
        cipher.open(bytes(sealed), HERE)
    with pytest.raises(PayloadTampered):
        PayloadCipher.parse(f"k1:{K2}").open(cipher.seal(b"x", HERE), HERE)
    with pytest.raises(PayloadTampered):
        cipher.open(MARKER + b"\x09k", HERE)


def test_a_journal_body_spliced_into_another_sagas_record_is_refused() -> None:
    codec = RecordCodec.for_settings(Settings(payload_keys=Secret(f"k1:{K1}")))
    mine = codec.encode_entry(ev.Entry("o-1", 1, 1_000, ev.SagaStarted("order", 1, ORDER)))
    theirs = codec.encode_entry(ev.Entry("o-2", 1, 1_000, ev.SagaStarted("order", 1, {})))
    _, record = codec.codec.decode(theirs, expect="journal_event")
    record["body"] = codec.codec.decode(mine, expect="journal_event")[1]["body"]
    spliced = codec.codec.encode("journal_event", record)
    with pytest.raises(PayloadTampered):
        codec.decode_entry(spliced)


@pytest.mark.parametrize("listed", ["k1", f"k1:{base64.b64encode(b'short').decode()}",
                                    "k1:not base64!", f":{K1}"])
def test_bad_keys_are_refused_with_a_hint(listed: str) -> None:
    with pytest.raises(ConfigError) as bad:
        Settings.from_env({"SAGA_PAYLOAD_KEYS": listed})
    assert "saga keys new" in (bad.value.hint or "")


def test_a_current_key_that_is_not_listed_is_refused() -> None:
    with pytest.raises(ConfigError, match="SAGA_PAYLOAD_KEY_ID"):
        Settings.from_env({"SAGA_PAYLOAD_KEYS": f"k1:{K1}", "SAGA_PAYLOAD_KEY_ID": "k9"})


def test_every_body_the_codec_writes_is_sealed() -> None:
    settings = Settings(payload_keys=Secret(f"k1:{K1}"))
    assert "k1:" not in repr(settings)
    codec = RecordCodec.for_settings(settings)
    entry = ev.Entry("o-1", 1, 1_000, ev.SagaStarted("order", 1, ORDER))
    command = ev.CommandIssued(1, "o-1:1", "payments", "charge", ev.CommandKind.ACTION, 1,
                               ORDER)
    records = [codec.encode_entry(entry),
               codec.encode_command("o-1", "order", command, "saga.inbox", 1_000)]
    for record in records:
        assert b"c-private-42" not in record
    assert codec.decode_entry(records[0]) == entry
    assert codec.decode_command(records[1])["body"] == ORDER
    plain = RecordCodec()
    with pytest.raises(PayloadKeyMissing):
        plain.decode_entry(records[0])
