"""When a batch cannot commit: what becomes of its transaction, of the producer, and of
the input whose record Kafka refused.

Every answer here is a :class:`Retry` (the loop reads the batch again, by its one path)
or the end of the process: an abortable error aborts the transaction; a wedged producer,
or one whose abort fails too, is replaced; a record Kafka will never take has the input
that wrote it dead-lettered on the next reading; a fenced or fatal producer stops the
process with what to do next (a fenced one must not fence the newer instance back).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NoReturn

from confluent_kafka import KafkaError, KafkaException

from saga.coordinator import observe
from saga.coordinator.checkpoint import Checkpoint
from saga.errors import ClientStuck, CoordinatorFenced, RecordRefused
from saga.kafka import clients
from saga.telemetry import metrics

#: Another instance with the same transactional id took over: never fence it back.
FENCED = frozenset({KafkaError._FENCED, KafkaError.PRODUCER_FENCED,
                    KafkaError.INVALID_PRODUCER_EPOCH, KafkaError.FENCED_INSTANCE_ID})


@dataclass(frozen=True)
class Retry:
    """Why a batch is read again, said as a warning or as progress, and how long to
    wait first so that a refusal that persists does not spin the loop."""

    why: str
    pause_s: float = 0.0
    warn: bool = False


class BatchFailures:
    """Owns the coordinator's transactional producer (it is what gets replaced) and the
    inputs whose processing wrote a record Kafka refused."""

    def __init__(self, instance_id: str, inbox_topic: str, dlq_topic: str, *,
                 max_stuck_producers: int,
                 new_producer: Callable[[], Any], say: Callable[[str], None]) -> None:
        self._instance_id = instance_id
        self._inbox_topic = inbox_topic
        self._dlq_topic = dlq_topic
        self._max_stuck_producers = max_stuck_producers
        self._new_producer = new_producer
        self._say = say
        self.producer: Any = None
        #: By inbox (partition, offset): how often its processing wrote a record Kafka
        #: refused, and why. Read again, each is dead-lettered instead.
        self.refused: dict[tuple[int, int], tuple[int, str]] = {}

    def start_producer(self) -> None:
        self.producer = self._new_producer()

    # ---- the refused inputs' bookkeeping ---------------------------------------------
    def committed(self, consumed: dict[int, int]) -> None:
        """The batch up to ``consumed`` committed: its refused inputs' letters with it."""
        if self.refused:
            self.refused = {at: why for at, why in self.refused.items()
                            if at[1] >= consumed.get(at[0], 0)}

    def revoked(self, partitions: Iterable[int]) -> None:
        gone = set(partitions)
        self.refused = {at: why for at, why in self.refused.items() if at[0] not in gone}

    # ---- a batch that failed ---------------------------------------------------------
    def aborted(self, exc: KafkaException, checkpoint: Checkpoint) -> Retry:
        """Abort the open transaction; a fenced or fatal error stops the process."""
        error: KafkaError = exc.args[0]
        if error.fatal() or error.code() == KafkaError._FATAL or not (
                error.txn_requires_abort() or error.retriable()):
            self.fatal(error, exc)
        observe.aborted()
        return self._abort(checkpoint) or Retry(
            f"transaction aborted ({error}); re-reading the batch", warn=True)

    def refused_record(self, exc: RecordRefused, checkpoint: Checkpoint) -> Retry:
        """Kafka will never take a record this batch wrote: abort, and read the batch
        again with the input that wrote it dead-lettered. Sent again as it was, the
        same record would stop the batch for ever, on every instance that takes the
        partition."""
        replaced = self._abort(checkpoint)
        if replaced is not None:
            return replaced
        if exc.source is None:  # a fired timer's record: no input to set aside
            return Retry(f"{exc}; re-reading the batch", pause_s=1, warn=True)
        times = self.refused.get(exc.source, (0, ""))[0] + 1
        self.refused[exc.source] = (times, exc.message)
        partition, offset = exc.source
        where = f"{self._inbox_topic}/{partition}/{offset}"
        if times > 2:  # saga.dlq refuses even a bare letter: nothing left to send
            return Retry(f"{exc}; even the bare dead letter of {where} was refused: check "
                         f"max.message.bytes of {self._dlq_topic}; re-reading the batch",
                         pause_s=1, warn=True)
        return Retry(f"{exc}; {where} is dead-lettered instead; re-reading the batch",
                     warn=True)

    def replaced_producer(self, why: ClientStuck | str, *, pause_s: float = 0.0) -> Retry:
        """Give up a wedged or broken producer for a new one.

        The new producer's init_transactions fences the old one, so whatever the old one
        still holds open is aborted by the broker and never becomes visible."""
        stuck = clients.stuck_calls()
        if stuck > self._max_stuck_producers:
            raise CoordinatorFenced(
                f"coordinator {self._instance_id}: {stuck} transactional producers "
                "replaced in a row are still blocked inside librdkafka",
                hint="restart the process; if it recurs, check the brokers' health and "
                "the network between them")
        self._say(f"{why}; replacing the transactional producer")
        metrics.PRODUCER_REPLACEMENTS.inc()
        # The old producer is not kept: a blocked call holds it until it returns.
        self.start_producer()
        return Retry("re-reading the batch after replacing the producer", pause_s=pause_s)

    def fatal(self, error: KafkaError, cause: BaseException | None = None) -> NoReturn:
        fenced = error.code() in FENCED
        hint = ("another instance with the same --instance-id took over (it fenced this "
                "one); give every instance its own id" if fenced else
                "see the error; the batch was not committed and is read again on restart")
        raise CoordinatorFenced(
            f"coordinator {self._instance_id} cannot go on: {error.str()}",
            hint=hint) from cause

    def _abort(self, checkpoint: Checkpoint) -> Retry | None:
        """Abort the open transaction; None when that worked. The abort itself can fail:
        after every partition was revoked on a loaded machine librdkafka answered
        INVALID_TXN_STATE ("Failed to end transaction"). That producer is then given up
        like a wedged one, unless it was fenced, which stops the process."""
        try:
            checkpoint.abort()
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            if error.code() in FENCED:
                self.fatal(error, exc)
            return self.replaced_producer(f"aborting the transaction failed ({error})",
                                          pause_s=1)
        return None
