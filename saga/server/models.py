"""The shapes of the HTTP API's requests and responses: what the OpenAPI document at
/openapi.json says, and what requests are validated against. Responses are written as
JSON straight from the index (these models document them; tests/saga/server fuzz the
server against the document)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from saga.engine.lifecycle import SagaStatus
from saga.errors import ErrorCode

#: Longest saga id the API takes (a Kafka key can be longer; nobody needs it to be).
MAX_ID = 512
#: A dead letter's id: its PARTITION:OFFSET in saga.dlq.
LETTER_ID = r"^[0-9]{1,9}:[0-9]{1,19}$"


class ErrorBody(BaseModel):
    error: str = Field(description="what went wrong, for a person (the wording may change)")
    code: ErrorCode = Field(description="what went wrong, for a program: stable")
    hint: str | None = Field(None, description="what to do about it")
    details: list[dict[str, Any]] | None = Field(None, description="per field, for a "
                                                 "request that does not fit its schema")


class StartRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    type: str = Field(min_length=1, max_length=200, description="the workflow, e.g. order")
    id: str = Field(min_length=1, max_length=MAX_ID, pattern=r"^[^\x00]+$",
                    description="the saga id; starting the same id again starts nothing. "
                    "In paths, percent-encode it as one segment (a / as %2F)")
    input: Any = Field(None, description="the saga's input, any JSON")

    @field_validator("id")
    @classmethod
    def addressable(cls, value: str) -> str:
        # A browser turns a path segment "." or ".." (even escaped as %2E) into a move
        # up the path before it sends anything: such a saga could not be reached.
        if value in (".", ".."):
            raise ValueError("the ids . and .. cannot be named in a URL path")
        return value


class StartResponse(BaseModel):
    saga_id: str
    created: bool | None = Field(description="true: this request started the saga; false: "
                                 "it was there already; null: not visible yet (see hint)")
    status: SagaStatus | None = None
    hint: str | None = None


class SignalRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    payload: Any = Field(None, description="any JSON; a signal without one reads as {}")


class ReasonRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    reason: str | None = Field(None, max_length=1000)


class EmptyRequest(BaseModel):
    """``{}``: a route that acts takes a JSON body even when it needs no field (an HTML
    form on another site cannot send one)."""

    model_config = ConfigDict(extra="forbid", strict=True)


class AbandonRequest(ReasonRequest):
    compensate: bool = Field(False, description="undo what the saga did before it ends")


class Accepted(BaseModel):
    saga_id: str
    accepted: bool = True
    input: str = Field(description="what was sent to the saga's inbox")


class TimerRef(BaseModel):
    timer_id: str
    purpose: str
    due_ms: int


class SagaSummary(BaseModel):
    """The same fields as `saga status --json`."""

    saga_id: str
    type: str
    version: int
    status: SagaStatus | None
    result: Any = None
    error: str | None = None
    last_error: str | None = None
    events: int
    started_at_ms: int
    updated_at_ms: int
    ended_at_ms: int | None = None
    waiting_for: list[str]
    in_flight: int
    timers: list[TimerRef]


class SagaPage(BaseModel):
    sagas: list[SagaSummary]
    next_cursor: str | None = Field(description="pass as cursor= for the next page; null "
                                    "on the last")


class HistoryEntry(BaseModel):
    model_config = ConfigDict(extra="allow")
    seq: int
    at_ms: int
    type: str = Field(description="the event type, e.g. CommandIssued")


class SagaResult(BaseModel):
    saga_id: str
    status: SagaStatus | None
    done: bool = Field(description="true once the saga has ended (any terminal status)")
    result: Any = None
    error: str | None = None


class PendingTimer(BaseModel):
    timer_id: str
    saga_id: str
    due_ms: int


class TimersReport(BaseModel):
    now_ms: int
    pending: int
    overdue: int
    overdue_capped: bool = Field(description="overdue was counted up to the server's "
                                 "SAGA_SERVER_SCAN_LIMIT and there are more")
    next_due_ms: int | None
    timers: list[PendingTimer] = Field(description="the earliest due, up to limit")


class DeadLetter(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str = Field(description="PARTITION:OFFSET in saga.dlq")
    reason: str
    detail: str
    component: str
    source: str


class RedriveRequest(BaseModel):
    """Name the letters by id, or all of one reason (at least one of the two)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    ids: list[Annotated[str, Field(pattern=LETTER_ID)]] = Field(default_factory=list,
                                                                max_length=1000)
    reason: str | None = Field(None, min_length=1, max_length=200)
    limit: int = Field(1000, ge=1, le=1000, description="with reason: letters per request")
    cursor: str | None = Field(None, max_length=2000, description="with reason: the "
                               "next_cursor of the previous request")


class Refused(BaseModel):
    id: str
    reason: str = Field(description="why it was not sent back (RedriveRefusal)")
    detail: str


class Redriven(BaseModel):
    redriven: list[str]
    refused: list[Refused] = Field(default_factory=list, description="letters not sent "
                                   "back, with why")
    next_cursor: str | None = Field(None, description="with reason: more letters may have "
                                    "it; send again with this cursor")


class Durations(BaseModel):
    count: int
    p50: int
    p90: int
    p99: int
    max: int


class Stats(BaseModel):
    counts: dict[str, int] = Field(description="sagas per status")
    durations: dict[str, Durations] = Field(description="per saga type, of ended sagas (ms; "
                                            "percentiles within 2 %, count and max exact)")
    dead_letters: int = Field(description="letters in saga.dlq")


class RecentBucket(BaseModel):
    """Ten seconds of the last fifteen minutes."""

    at_ms: int
    started: int
    ended: int
    steps: int = Field(description="steps answered (or timed out)")
    step_p50_ms: int | None
    step_p99_ms: int | None


class UpdateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    payload: Any = None
    update_id: str | None = Field(None, min_length=1, max_length=200,
                                  description="yours, so a retry is applied once; one is "
                                  "made up when absent")
    wait: float = Field(30, ge=0, le=300, description="seconds to wait for the answer")


class UpdateAnswer(BaseModel):
    update_id: str
    result: Any = None
    pending: bool = Field(False, description="true: sent, no answer yet (ask again with the "
                          "same update_id)")


class ScheduleRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    schedule_id: str = Field(min_length=1, max_length=200, pattern=r"^[^\x00]+$")
    cron: str = Field(min_length=1, max_length=200,
                      description="five fields (minute hour day month weekday), or six "
                      "with seconds last")
    saga_type: str = Field(min_length=1, max_length=200)
    input: Any = None
    timezone: str = Field("UTC", max_length=100)
    overlap: Literal["skip", "buffer", "allow"] = "skip"
    catchup_window_s: float = Field(60, ge=0, le=10 * 365 * 86400)


class Schedule(BaseModel):
    model_config = ConfigDict(extra="allow")
    schedule_id: str
    cron: str
    saga_type: str
    paused: bool
    runs: int
    next_slot_ms: int | None = None


class ScheduleCreated(BaseModel):
    schedule_id: str
    created: bool | None


class BulkFilter(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    status: SagaStatus | None = None
    type: str | None = Field(None, max_length=200)
    version: int | None = Field(None, ge=0, le=10**9)
    id_prefix: str | None = Field(None, max_length=MAX_ID)
    attributes: dict[str, Any] | None = None


class BulkRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    filter: BulkFilter = Field(default_factory=BulkFilter)
    dry_run: bool = Field(False, description="list what it would touch, send nothing")
    name: str | None = Field(None, min_length=1, max_length=200, description="signal: its name")
    payload: Any = None
    reason: str | None = Field(None, max_length=1000)
    limit: int = Field(1000, ge=1, le=1000, description="sagas per request")
    cursor: str | None = Field(None, max_length=2000, description="the next_cursor of "
                               "the previous request")


class BulkResult(BaseModel):
    matched: list[str]
    sent: int
    dry_run: bool
    next_cursor: str | None = Field(description="more sagas may match: send the same "
                                    "request again with this cursor; null once done")


class Health(BaseModel):
    status: str
    feed_error: str | None = None


class Readiness(BaseModel):
    ready: bool
    lag: dict[str, int] = Field(description="records not yet indexed, per topic")
    entries_indexed: int
    hint: str | None = None
