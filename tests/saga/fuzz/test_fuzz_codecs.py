"""Every decoder of the Kafka edge, fed garbage and mutated valid records: it returns a
value or raises CodecError, never anything else (a crash would halt a partition).
Encoders round-trip whatever JSON they accept, sealed, claim-checked or not."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from collections.abc import Callable
from typing import Any

from hypothesis import event, given
from hypothesis import strategies as st

from saga.codec.claim_check import ClaimCheck
from saga.codec.payload import PayloadCipher, new_key
from saga.engine import events as ev
from saga.engine.inputs import CommandReply, DeliverSignal, ReplyOutcome, StartSaga
from saga.errors import CodecError
from saga.kafka.records import RecordCodec
from saga.store.blobs import DirectoryBlobStore
from saga.store.service_store import StateChange
from tests.saga.fuzz.budget import fuzz

PLAIN = RecordCodec(max_payload_bytes=64 * 1024)
SEALED = RecordCodec(max_payload_bytes=64 * 1024,
                     cipher=PayloadCipher.parse(f"k1:{new_key()}"))
# Every body above 16 bytes leaves its record: mutations hit claims (size, digest).
_CLAIMS = tempfile.mkdtemp(prefix="saga-fuzz-claims-")
atexit.register(shutil.rmtree, _CLAIMS, ignore_errors=True)
CLAIMED = RecordCodec(max_payload_bytes=64 * 1024,
                      cipher=PayloadCipher.parse(f"k1:{new_key()}"),
                      claims=ClaimCheck(DirectoryBlobStore(_CLAIMS), threshold=16))
ORDER = {"id": "o-1", "customer": "c-9", "items": [{"sku": "sku-1", "qty": 2}]}


def _valid(codec: RecordCodec) -> dict[str, tuple[bytes, Callable[[bytes], Any]]]:
    command = ev.CommandIssued(1, "o-1:1", "payments", "charge", ev.CommandKind.ACTION, 1,
                               ORDER)
    timer = ev.TimerScheduled("o-1:t1", 1, ev.TimerPurpose.SLEEP, 5_000)
    return {
        "start": (codec.encode_inbox("o-1", StartSaga("order", ORDER)), codec.decode_inbox),
        "signal": (codec.encode_inbox("o-1", DeliverSignal("go", {"a": [1, 2]})),
                   codec.decode_inbox),
        "reply": (codec.encode_inbox("o-1", CommandReply("o-1:1", "payments",
                                                         ReplyOutcome.OK, {"ok": True}, "")),
                  codec.decode_inbox),
        "journal": (codec.encode_entry(ev.Entry("o-1", 1, 1, ev.SagaStarted("order", 1,
                                                                            ORDER))),
                    codec.decode_journal),
        "command": (codec.encode_command("o-1", "order", command, "saga.inbox", 1),
                    codec.decode_command),
        "timer": (codec.encode_timer("o-1", timer), codec.decode_timer),
        "state": (codec.encode_state_change(StateChange("k", 1, {"v": 1}, "o-1:1")),
                  codec.decode_state_change),
        "schedule": (codec.encode_schedule("s-1", "o-1", {"cron": "* * * * *"}, 1),
                     codec.decode_schedule),
    }


VALID = {**{f"plain-{k}": v for k, v in _valid(PLAIN).items()},
         **{f"sealed-{k}": v for k, v in _valid(SEALED).items()},
         **{f"claimed-{k}": v for k, v in _valid(CLAIMED).items()}}


def _decodes_or_refuses(decode: Callable[[bytes], Any], data: bytes) -> None:
    """Any exception but a CodecError with a hint fails the test."""
    refused: CodecError | None = None
    try:
        decode(data)
    except CodecError as exc:
        refused = exc
    event(f"refused: {type(refused).__name__}" if refused else "decoded")
    assert refused is None or refused.hint, f"a refusal that says nothing to do: {refused}"


@fuzz(weight=0.3)
@given(st.sampled_from(sorted(VALID)), st.booleans(), st.binary(max_size=2048))
def test_garbage_is_refused_as_a_codec_error(kind: str, framed: bool, data: bytes) -> None:
    # Framed: a real schema's 10-byte header, then garbage (past the marker check).
    header = VALID[kind][0][:10] if framed else b""
    _decodes_or_refuses(VALID[kind][1], header + data)


@st.composite
def _mutated(draw: st.DrawFn) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(sorted(VALID)))
    data = bytearray(VALID[kind][0])
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "drop"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "cut":
            del data[at:]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif data:
            del data[at]
    return kind, bytes(data)


@fuzz(weight=0.4)
@given(_mutated())
def test_mutated_records_are_decoded_or_refused(case: tuple[str, bytes]) -> None:
    kind, data = case
    _decodes_or_refuses(VALID[kind][1], data)


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10),
                                                                 inner, max_size=5),
    max_leaves=30)


@fuzz(weight=0.2)
@given(_json, st.sampled_from([PLAIN, SEALED, CLAIMED]))
def test_any_json_input_round_trips_sealed_claimed_or_not(value: Any, codec: RecordCodec
                                                          ) -> None:
    message = codec.decode_inbox(codec.encode_inbox("o-1", StartSaga("order", value)))
    assert message.value == StartSaga("order", value)
