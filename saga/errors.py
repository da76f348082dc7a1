"""Every exception kafka-saga raises, in one family.

Every error says whether trying again can help (``retryable``), the way aiokafka marks
``retriable`` errors and Temporal marks ``non_retryable`` failures, and carries a hint
that tells the operator what to do next. Catch the narrowest class that fits.

The CLI exits 2 on any error of the family, after printing its message and hint.
"""

from __future__ import annotations


class SagaError(Exception):
    """Root of every error raised by kafka-saga."""

    retryable: bool = False
    #: What to do when the raiser names nothing more specific.
    default_hint: str | None = None

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint if hint is not None else self.default_hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ConfigError(SagaError):
    """A setting is missing or malformed; fix the flag or ``SAGA_*`` variable."""


class EnvironmentMissing(SagaError):
    """A tool the command needs (Java, Maven, Docker) is not installed."""


class KafkaUnavailable(SagaError):
    """The Kafka cluster did not answer in time; it may come back."""

    retryable = True


class EmbeddedKafkaError(SagaError):
    """The embedded broker could not be started or stopped."""


class KafkaError(SagaError):
    """Kafka refused a request for a reason that will not pass by itself (authorisation,
    a bad configuration, an unknown topic)."""


class TopicError(SagaError):
    """A topic operation was refused by the cluster."""


class TopicMismatch(TopicError):
    """The topics on the cluster differ from their specs in topics/."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(
            f"{len(problems)} topic problem(s): " + "; ".join(problems),
            hint="run `saga topics create` for missing topics; a wrong partition count "
            "or cleanup policy needs the topic recreated or altered by hand",
        )
        self.problems = problems


class CodecError(SagaError):
    """Bytes could not be decoded into a message, or a message could not be encoded."""

    default_hint = ("the record was not written by kafka-saga, or is corrupt (docs/topics.md "
                    "has the formats); the coordinator and the services set such records "
                    "aside in saga.dlq")


class NotFramed(CodecError):
    """The bytes do not start with the Avro single-object marker: not ours, or garbage."""


class TruncatedRecord(CodecError):
    """The bytes end before the record does."""

    default_hint = "the record was cut short: a broken producer, or corruption"


class UnknownSchema(CodecError):
    """The writer's schema fingerprint is not one this build knows (newer or foreign)."""


class SchemaMismatch(CodecError):
    """The record does not fit its schema (wrong field types, missing fields)."""

    default_hint = "check the record against schemas/ (docs/topics.md)"


class PayloadTooLarge(CodecError):
    """A JSON body exceeds the configured maximum size."""


class BodyUnavailable(CodecError):
    """A body this process cannot read for want of a setting (a payload key, the
    claim-check store): readers of the journal stop on it rather than pass over the
    record, since every later one needs the same fix."""


class PayloadKeyMissing(BodyUnavailable):
    """A body was sealed with a payload key this process does not have."""


class ClaimMissing(BodyUnavailable):
    """A record refers to a claim-checked body that this process's store does not hold
    (no SAGA_CLAIM_CHECK_DIR, another directory, or the blob was deleted)."""


class ClaimStoreUnavailable(SagaError):
    """The claim-check directory cannot be written or read (unmounted, full, no
    permission): the batch is read again once it can."""

    retryable = True
    default_hint = ("check that SAGA_CLAIM_CHECK_DIR is mounted, shared and writable by "
                    "this process")


class ClaimTampered(CodecError):
    """A claim-checked body does not match the digest its record carries."""


class PayloadTampered(CodecError):
    """A sealed body does not open with the key of its id: altered, or a wrong key."""


class StepFailed(SagaError):
    """A step of the workflow failed for good; raised inside the workflow function.

    ``reason`` is the service's BusinessError reason, ``retries_exhausted`` after the
    retry policy gave up, or ``cancelled``.
    """

    def __init__(self, reason: str, *, service: str = "", command: str = "",
                 detail: str = "") -> None:
        where = f"{service}.{command}" if service else "step"
        super().__init__(f"{where} failed: {reason}" + (f" ({detail})" if detail else ""))
        self.reason = reason
        self.service = service
        self.command = command
        self.detail = detail


class UnencodableValue(SagaError):
    """A workflow handed a ctx.* call (or returned) a value that is not JSON or is too
    big to journal; raised where the workflow made the call, so it can see which."""


class NonDeterminismError(SagaError):
    """Replaying a saga took another path than its journal records; the saga is parked."""


class IllegalTransition(SagaError):
    """A saga was asked to move between two states the lifecycle does not connect."""


class WorkflowDefinitionError(SagaError):
    """A workflow is declared wrongly (not async, registered twice, bad policy)."""


class BusinessError(SagaError):
    """Raised by a service handler for a failure the saga must not retry: out of stock,
    card declined. The saga sees it at once as ``StepFailed(reason)``."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason + (f": {detail}" if detail else ""))
        self.reason = reason
        self.detail = detail


class StoreError(SagaError):
    """A local RocksDB store (projection, timer index, service store) cannot be used."""


class StoreCorrupt(StoreError):
    """A local store cannot be read, or has another format; it is rebuilt from Kafka."""


class StoreLocked(StoreError):
    """Another process holds the store open for writing: never wipe it."""


class StoreMissing(StoreError):
    """The store does not exist yet (nothing has written it)."""


class JournalGap(StoreError):
    """The projection and the journal disagree on a saga's history: an entry is missing
    or comes twice. Never papered over: rebuild the projection from the journal."""


class CoordinatorFenced(SagaError):
    """A newer instance with this instance id (or a fatal broker error) ended this one.

    Nothing it did after the fencing point is committed: its open transaction is
    aborted by the newer instance's init_transactions."""


class ServiceFenced(SagaError):
    """Another instance of the service took over a command partition this one still
    held (it was paused, or cut off): nothing it did since counts; it rejoins."""

    retryable = True


class SagaNotFound(SagaError):
    """No saga has this id (or it started a moment ago and is not visible yet)."""


class UnknownSagaType(SagaError):
    """A start named a workflow type no coordinator has registered."""


class SagaDidNotComplete(SagaError):
    """``result()`` of a saga that ended otherwise than COMPLETED: its ``status``, the
    ``reason`` and whatever ``result`` it returned (a compensated order returns why)."""

    def __init__(self, saga_id: str, status: str, reason: str, result: object = None
                 ) -> None:
        super().__init__(f"saga {saga_id} ended {status}: {reason}",
                         hint="see its history for what happened step by step")
        self.saga_id = saga_id
        self.status = status
        self.reason = reason
        self.result = result


class SagaCompensated(SagaDidNotComplete):
    """It undid what it did (e.g. out of stock) and ended COMPENSATED."""


class SagaFailed(SagaDidNotComplete):
    """It ended FAILED: a workflow error after compensating, or abandoned."""


class SagaCancelled(SagaDidNotComplete):
    """It was cancelled, compensated, and ended CANCELLED."""


class SagaStillRunning(SagaError):
    """``result()`` timed out: the saga has not ended yet (its ``status`` now); waiting
    longer is fine."""

    retryable = True

    def __init__(self, saga_id: str, status: str | None, waited_s: float) -> None:
        super().__init__(f"saga {saga_id} is still {status or 'not started'} after "
                         f"{waited_s:g}s", hint="wait longer, or look at its status and "
                         "history for what it waits for")
        self.saga_id = saga_id
        self.status = status


class UpdateRefused(SagaError):
    """The saga refused an update: no handler by that name, its validator (or handler)
    raised, or the saga has ended. Nothing of it was applied."""


class UpdateTimedOut(SagaError):
    """The update was sent but no answer came in time (is a coordinator running?). It
    may still be applied; sending it again with the same id applies it at most once."""

    retryable = True


class RequestRefused(SagaError):
    """An HTTP API request refused with a 4xx ``status`` (the body says why and what to
    do); not retryable as it stands."""

    def __init__(self, status: int, message: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status


class AccessDenied(SagaError):
    """The API refused the caller: no token, an unknown one, or a read token where an
    operate one is needed. Not retryable with the same token."""


class ClientStuck(SagaError):
    """A Kafka client call overran its deadline and is still blocked inside librdkafka;
    the client it was made on must be abandoned."""

    retryable = True
