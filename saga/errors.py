"""Every exception kafka-saga raises, in one family.

Every error says whether trying again can help (``retryable``), the way aiokafka marks
``retriable`` errors and Temporal marks ``non_retryable`` failures, and carries a hint
that tells the operator what to do next. Catch the narrowest class that fits.

The CLI exits 2 on any error of the family, after printing its message and hint.
"""

from __future__ import annotations

from enum import StrEnum


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


class NotCompiled(CodecError):
    """The compiled Avro writer (saga/codec/avro_binary.py) declines a record it is not
    sure of; the codec then asks fastavro, so this never leaves the codec."""


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


class RebuildFailed(StoreError):
    """A worker of a rebuild folded in parallel ended without an answer (killed, out of
    memory) or failed on something that is not a kafka-saga error."""

    default_hint = "run `saga rebuild --workers 1` to fold in one process and see why"


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


def did_not_complete(saga_id: str, status: str, error: str, result: object
                     ) -> SagaDidNotComplete:
    """What ``result()`` raises for a saga that ended ``status``, not COMPLETED (the
    client and saga.testing alike): the reason is its error, else the ``reason`` its
    result names (a compensated order returns why), else the status."""
    reason = error or (result.get("reason") if isinstance(result, dict) else None) \
        or status.lower()
    kind = {"COMPENSATED": SagaCompensated, "FAILED": SagaFailed,
            "CANCELLED": SagaCancelled}.get(status, SagaDidNotComplete)
    return kind(saga_id, status, str(reason), result)


class HistoryError(SagaError):
    """A recorded history (`saga history ID --json`, a journal dump) cannot be read or
    folded into a saga's state."""

    default_hint = ("export it again: `saga history ID --json > ID.json`, or every history "
                    "with `saga verify-replay --dump FILE`")


class SagaTestError(SagaError):
    """saga.testing cannot do what the test asked; the message says where the saga
    stands."""


class SagaStalled(SagaTestError):
    """A test waits for a saga that cannot go on by itself: nothing is due (it waits for
    a signal, an update or a reply that never comes), or virtual time may not move."""

    default_hint = ("send what it waits for (env.signal), move the clock (env.advance), or "
                    "read its journal (env.journal(saga_id))")


class SagaParkedError(SagaTestError):
    """A saga a test waits for has parked: non-determinism, a foreign awaitable, an
    unregistered version, a workflow bug or an exceeded budget."""

    default_hint = ("fix the workflow and call env.resume(saga_id) (the saga replays with "
                    "the code now registered), or read env.journal(saga_id)")


class UnhandledCommand(SagaTestError):
    """A saga sent a command that no registered service and no mock answers."""

    default_hint = ("register the service (env.register(service)) or mock the command "
                    "(env.mock(service, command, Reply.ok(...)))")


class SimulatedFailure(SagaError):
    """A technical failure a saga.testing mock was told to raise: to the saga it is a
    handler's exception, retried by the step's RetryPolicy. No hint: its text is the
    step's failure reason in the journal, as a real exception's would be."""

    retryable = True


class RequestRefused(SagaError):
    """The HTTP API refused a request as it stands (its ``code`` and status say why, the
    hint what to do); not retryable unchanged. The subclasses below are its kinds."""


class BadRequest(RequestRefused):
    """The request is not JSON, is empty where a JSON body is needed, or holds text that
    is not UTF-8."""

    default_hint = "send a JSON document ({} at least) with Content-Type: application/json"


class HostNotAllowed(RequestRefused):
    """The request's Host is not one the server answers to (a DNS rebinding page names
    the attacker's host): set SAGA_SERVER_ALLOWED_HOSTS on the server."""

    default_hint = ("call the server by a name in its SAGA_SERVER_ALLOWED_HOSTS (by "
                    "default loopback names and the address it listens on), or add yours")


class NoSuchRoute(RequestRefused):
    """No route has this path."""

    default_hint = "see /openapi.json for the routes"


class MethodNotAllowed(RequestRefused):
    """The route takes other methods (the response's Allow header lists them)."""

    default_hint = "see /openapi.json for the routes"


class UnsupportedMediaType(RequestRefused):
    """A route that acts got a body not sent as application/json (what an HTML form on
    another site sends): refused before anything is read or done."""

    default_hint = "send the body as JSON ({} at least) with Content-Type: application/json"


class InvalidRequest(RequestRefused):
    """The request does not fit its route's schema (its ``details`` say where)."""

    default_hint = "see /openapi.json for the fields each route takes"


class ScheduleNotFound(RequestRefused):
    """No schedule has this id (or it was deleted)."""

    default_hint = "see GET /api/schedules"


class DeadLetterNotFound(RequestRefused):
    """No dead letter has this PARTITION:OFFSET id."""

    default_hint = "see GET /api/dlq for the ids"


class AccessDenied(SagaError):
    """The API refused the caller: no token, an unknown one, or a read token where an
    operate one is needed. Not retryable with the same token."""


class Unauthenticated(AccessDenied):
    """The server wants a bearer token and the request brought none it knows."""

    default_hint = ("send `Authorization: Bearer <token>`: the client and the CLI take it "
                    "from SAGA_API_TOKEN; the server's tokens are SAGA_API_READ_TOKENS and "
                    "SAGA_API_OPERATE_TOKENS")


class Forbidden(AccessDenied):
    """A read token on a route that acts."""

    default_hint = "use a token listed in the server's SAGA_API_OPERATE_TOKENS"


class OriginNotAllowed(AccessDenied):
    """A browser sent the request from a page of another site (its Origin is not a host
    the server answers to): a cross-site request, refused before anything is done."""

    default_hint = ("open the console from the server itself, or add the page's host to "
                    "the server's SAGA_SERVER_ALLOWED_HOSTS")


class ServerBusy(SagaError):
    """The server holds as many waiting requests (long polls) as it allows
    (SAGA_SERVER_MAX_WAITING); ask again in a moment, or without waiting."""

    retryable = True
    default_hint = ("retry after the Retry-After seconds, or ask with wait=0 and poll; "
                    "the server's limit is SAGA_SERVER_MAX_WAITING")


class ClientStuck(SagaError):
    """A Kafka client call overran its deadline and is still blocked inside librdkafka;
    the client it was made on must be abandoned."""

    retryable = True


class RecordRefused(SagaError):
    """Kafka refused one record for good (over the producer's or broker's size limit,
    or invalid): sending it again cannot help. The input or command whose processing
    wrote it is dead-lettered instead (reason ``record_refused``) and the rest goes
    on; ``source`` is its (partition, offset)."""

    default_hint = ("see the dead letter's detail for the record Kafka refused; raise "
                    "message.max.bytes (broker, topic and producer) only if such records "
                    "are meant to be")

    def __init__(self, message: str, *, source: tuple[int, int] | None,
                 hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.source = source


class ErrorCode(StrEnum):
    """The ``code`` of every error body of the HTTP API: stable, for programs to act on
    (the ``error`` text is for people and may change). docs/http-api.md lists them."""

    BAD_REQUEST = "bad_request"
    HOST_NOT_ALLOWED = "host_not_allowed"
    UNAUTHENTICATED = "unauthenticated"
    FORBIDDEN = "forbidden"
    ORIGIN_NOT_ALLOWED = "origin_not_allowed"
    SAGA_NOT_FOUND = "saga_not_found"
    SCHEDULE_NOT_FOUND = "schedule_not_found"
    DEAD_LETTER_NOT_FOUND = "dead_letter_not_found"
    NO_SUCH_ROUTE = "no_such_route"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    UPDATE_REFUSED = "update_refused"
    TOO_LARGE = "too_large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    INVALID_REQUEST = "invalid_request"
    UNKNOWN_SAGA_TYPE = "unknown_saga_type"
    INVALID_VALUE = "invalid_value"
    UNENCODABLE = "unencodable"
    SERVER_BUSY = "server_busy"
    KAFKA_UNAVAILABLE = "kafka_unavailable"
    INTERNAL = "internal"


#: The one table between errors and the HTTP API: each error class, the status the
#: server answers it with and the code its body carries. The server finds an error's
#: row by its class (the nearest listed ancestor); the client raises the class of the
#: code it reads. One class per code, so the two directions agree.
HTTP_ERRORS: dict[type[SagaError], tuple[int, ErrorCode]] = {
    BadRequest: (400, ErrorCode.BAD_REQUEST),
    HostNotAllowed: (400, ErrorCode.HOST_NOT_ALLOWED),
    Unauthenticated: (401, ErrorCode.UNAUTHENTICATED),
    Forbidden: (403, ErrorCode.FORBIDDEN),
    OriginNotAllowed: (403, ErrorCode.ORIGIN_NOT_ALLOWED),
    SagaNotFound: (404, ErrorCode.SAGA_NOT_FOUND),
    ScheduleNotFound: (404, ErrorCode.SCHEDULE_NOT_FOUND),
    DeadLetterNotFound: (404, ErrorCode.DEAD_LETTER_NOT_FOUND),
    NoSuchRoute: (404, ErrorCode.NO_SUCH_ROUTE),
    MethodNotAllowed: (405, ErrorCode.METHOD_NOT_ALLOWED),
    UpdateRefused: (409, ErrorCode.UPDATE_REFUSED),
    PayloadTooLarge: (413, ErrorCode.TOO_LARGE),
    UnsupportedMediaType: (415, ErrorCode.UNSUPPORTED_MEDIA_TYPE),
    InvalidRequest: (422, ErrorCode.INVALID_REQUEST),
    UnknownSagaType: (422, ErrorCode.UNKNOWN_SAGA_TYPE),
    ConfigError: (422, ErrorCode.INVALID_VALUE),
    CodecError: (422, ErrorCode.UNENCODABLE),
    ServerBusy: (503, ErrorCode.SERVER_BUSY),
    KafkaUnavailable: (503, ErrorCode.KAFKA_UNAVAILABLE),
    SagaError: (500, ErrorCode.INTERNAL),
}


def http_error(error: SagaError) -> tuple[int, ErrorCode]:
    """The status and code the HTTP API answers ``error`` with."""
    # SagaError is in the table and in every error's class chain.
    return next(HTTP_ERRORS[kind] for kind in type(error).__mro__ if kind in HTTP_ERRORS)


def error_of_code(code: str | None) -> type[SagaError] | None:
    """The class the client raises for an error body's ``code`` (None: not one this
    build knows, e.g. a proxy's page or a newer server's)."""
    try:
        known = ErrorCode(code) if code is not None else None
    except ValueError:
        return None
    return _BY_CODE.get(known) if known is not None else None


_BY_CODE: dict[ErrorCode, type[SagaError]] = {code: kind
                                              for kind, (_, code) in HTTP_ERRORS.items()}
