"""The one exception root of kafka-saga.

Every error says whether trying again can help (``retryable``), the way aiokafka marks
``retriable`` errors and Temporal marks ``non_retryable`` failures, and carries a hint
that tells the operator what to do next. Catch the narrowest class that fits.
"""

from __future__ import annotations


class SagaError(Exception):
    """Root of every error raised by kafka-saga."""

    retryable: bool = False

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

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


class NotFramed(CodecError):
    """The bytes do not start with the Avro single-object marker: not ours, or garbage."""


class TruncatedRecord(CodecError):
    """The bytes end before the record does."""


class UnknownSchema(CodecError):
    """The writer's schema fingerprint is not one this build knows (newer or foreign)."""


class SchemaMismatch(CodecError):
    """The record does not fit its schema (wrong field types, missing fields)."""


class PayloadTooLarge(CodecError):
    """A JSON body exceeds the configured maximum size."""


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


class NonDeterminismError(SagaError):
    """Replaying a saga took another path than its journal records; the saga is parked."""
