"""Where an inbox record goes before anything is decided: set aside, sent on, or decided.

The coordinator asks this for every record it consumes. Only an input that decodes, whose
record key is its saga id, and that sits in its saga's own partition is decided here; the
others never reach the engine, so a saga's journal stays whole in one partition whatever
another client's producer did.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

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
    def __init__(self, codec: RecordCodec, partitions: int) -> None:
        self.codec = codec
        self.partitions = partitions

    def route(self, key: bytes | None, value: bytes | None, partition: int,
              headers: Callable[[], Headers]) -> Route:
        """Where the record at ``partition`` goes; ``headers`` is read only for a start
        (its trace context rides in a header)."""
        try:
            inbox = self.codec.decode_inbox(value)
        except CodecError as exc:
            return SetAside(DeadLetterReason.UNDECODABLE, f"{type(exc).__name__}: {exc}")
        saga_id, decoded = inbox.saga_id, inbox.value
        kind = INPUT_KINDS.get(type(decoded), "other")
        if key is not None and key != saga_id.encode():
            return SetAside(DeadLetterReason.KEY_MISMATCH,
                            f"record key {key!r} is not the saga id {saga_id!r}", kind)
        home = partition_of(saga_id, self.partitions)
        if key is None or home != partition:
            # Another client's partitioner, or no key at all.
            return SendOn(saga_id, home, kind)
        if isinstance(decoded, StartSaga) and not decoded.trace:
            # The saga keeps its starter's trace context, from wherever it is decided.
            decoded = replace(decoded, trace=tracing.header(headers()))
        return Decide(saga_id, decoded, kind)
