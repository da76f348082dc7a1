"""Where an inbox record goes before anything is decided: set aside, sent on, or decided.

The coordinator asks this for every record it consumes. Only an input that decodes, whose
record key is its saga id, and that sits in its saga's own partition is decided here; the
others never reach the engine, so a saga's journal stays whole in one partition whatever
another client's producer did.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import cache

from saga.codec.origin import OriginKeys
from saga.engine.ids import MAX_SAGA_ID_BYTES, saga_id_too_long
from saga.engine.inputs import (
    AbandonSaga,
    CancelSaga,
    ChildFinished,
    CommandReply,
    DeliverSignal,
    FireTimer,
    Input,
    ResumeSaga,
    StartSaga,
    UpdateSaga,
)
from saga.errors import CodecError
from saga.kafka import headers as names
from saga.kafka.partitioner import partition_of
from saga.kafka.records import DeadLetterReason, RecordCodec
from saga.telemetry import tracing

#: The kinds of input, as the metrics and the decision spans name them.
INPUT_KINDS: dict[type, str] = {StartSaga: "start", DeliverSignal: "signal",
                                CancelSaga: "cancel", CommandReply: "reply",
                                FireTimer: "timer", ResumeSaga: "resume",
                                AbandonSaga: "abandon", ChildFinished: "child",
                                UpdateSaga: "update"}

Headers = Sequence[tuple[str, bytes | None]] | None


@dataclass(frozen=True)
class SetAside:
    """To the dead-letter topic, with why. ``kind`` is None when nothing decoded."""

    reason: DeadLetterReason
    detail: str
    kind: str | None = None


@dataclass(frozen=True)
class SendOn:
    """To the saga's own partition: applied here it would split the saga's journal."""

    saga_id: str
    home: int
    kind: str


@dataclass(frozen=True)
class Decide:
    saga_id: str
    value: Input
    kind: str


Route = SetAside | SendOn | Decide


class InputRouter:
    def __init__(self, codec: RecordCodec, partitions: int, *, topic: str = "saga.inbox",
                 origin: OriginKeys | None = None) -> None:
        self.codec = codec
        self.partitions = partitions
        self.topic = topic
        self.origin = origin or OriginKeys()

    def route(self, key: bytes | None, value: bytes | None, partition: int,
              headers: Callable[[], Headers]) -> Route:
        """Where the record at ``partition`` goes; ``headers`` is read, once at most,
        only for a start (its trace context rides in a header) and for an input that
        must carry its writer's origin tag (saga/codec/origin.py)."""
        try:
            inbox = self.codec.decode_inbox(value)
        except CodecError as exc:
            return SetAside(DeadLetterReason.UNDECODABLE, f"{type(exc).__name__}: {exc}")
        saga_id, decoded = inbox.saga_id, inbox.value
        kind = INPUT_KINDS.get(type(decoded), "other")
        if saga_id_too_long(saga_id):
            # Every record of the saga would carry it (journal keys, command and timer
            # ids), and a re-routed input would add it as a key: refused at the door.
            return SetAside(DeadLetterReason.SAGA_ID_TOO_LONG,
                            f"a saga id of {len(saga_id.encode(errors='surrogatepass'))} "
                            f"bytes, over the {MAX_SAGA_ID_BYTES}-byte limit: "
                            f"{_preview(saga_id.encode(errors='surrogatepass'))}", kind)
        if key is not None and key != saga_id.encode():
            return SetAside(DeadLetterReason.KEY_MISMATCH,
                            f"record key {_preview(key)} is not the saga id {saga_id!r}",
                            kind)
        if isinstance(decoded, StartSaga):
            # A child's start needs its origin tag and then its trace context: one copy
            # out of the record serves both (no other input reads the headers twice).
            headers = cache(headers)
        if self.origin.checks and value is not None:
            refused = self._unproven(decoded, value, headers)
            if refused is not None:
                return SetAside(DeadLetterReason.UNPROVEN_ORIGIN, refused, kind)
        home = partition_of(saga_id, self.partitions)
        if key is None or home != partition:
            # Another client's partitioner, or no key at all.
            return SendOn(saga_id, home, kind)
        if isinstance(decoded, StartSaga) and not decoded.trace:
            # The saga keeps its starter's trace context, from wherever it is decided.
            decoded = replace(decoded, trace=tracing.header(headers()))
        return Decide(saga_id, decoded, kind)

    def _unproven(self, decoded: Input, value: bytes, headers: Callable[[], Headers]
                  ) -> str | None:
        """Why an input that only one writer may send lacks that writer's tag; None when
        it has it, or is an input anyone with write access may send."""
        if isinstance(decoded, CommandReply):
            if self.origin.reply_is_from(decoded.service, self.topic, value,
                                         _mac(headers())):
                return None
            return (f"a reply for {decoded.command_id} naming service "
                    f"{decoded.service!r} without that service's origin tag "
                    f"({names.ORIGIN_MAC} header)")
        own = isinstance(decoded, FireTimer | ChildFinished) or (
            isinstance(decoded, StartSaga) and decoded.parent)
        if own and not self.origin.is_own(self.topic, value, _mac(headers())):
            return (f"a {type(decoded).__name__} only the coordinator sends, without its "
                    f"origin tag ({names.ORIGIN_MAC} header)")
        return None


def _preview(data: bytes) -> str:
    """What a letter's detail shows of outside bytes: their start, and their size."""
    return repr(data) if len(data) <= 120 else f"{data[:120]!r}... ({len(data)} bytes)"


def _mac(headers: Headers) -> bytes | None:
    found = None
    for name, value in headers or ():
        if name == names.ORIGIN_MAC:
            found = value
    return found
