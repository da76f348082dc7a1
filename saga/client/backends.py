"""How the client reaches sagas: through the visibility server's HTTP API, or straight
through Kafka when no API is configured.

Through Kafka a start is produced to saga.inbox, and the client then watches the saga's
journal partition (and saga.dlq) for the entry its own record caused: ``SagaStarted``
(it created the saga), ``InputIgnored`` ``duplicate_start`` (the saga was there), or a
dead letter (an unknown type). Reads fold the journal: one partition for one saga, all
of it for a listing. That needs nothing but the brokers, and costs a read of the journal
per call; with many sagas, run `saga server` and give the client its URL.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

import httpx
from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from saga.config import Settings
from saga.engine import events as ev
from saga.engine.inputs import (
    AbandonSaga,
    CancelSaga,
    DeliverSignal,
    Input,
    ResumeSaga,
    StartSaga,
    UpdateSaga,
)
from saga.engine.lifecycle import SagaStatus
from saga.engine.state import SagaState, apply, check_sequence
from saga.errors import (
    AccessDenied,
    CodecError,
    ConfigError,
    KafkaUnavailable,
    RequestRefused,
    SagaError,
    SagaNotFound,
    ServerBusy,
    UnknownSagaType,
    UpdateRefused,
    error_of_code,
)
from saga.kafka import clients
from saga.kafka.inbox import InboxProducer
from saga.kafka.journal import read_journal
from saga.kafka.partitioner import partition_of
from saga.kafka.records import RecordCodec
from saga.store.visibility import ListQuery, attribute_pairs


@dataclass(frozen=True)
class Listing:
    summaries: list[dict[str, Any]]
    next_cursor: str | None


class Backend(Protocol):
    def start(self, saga_type: str, saga_id: str, saga_input: Any, wait_s: float
              ) -> bool | None:
        """Start the saga; whether this call created it (None: not visible in time)."""
        ...

    def send(self, saga_id: str, value: Input) -> None: ...

    def summary(self, saga_id: str) -> dict[str, Any]:
        """`saga status --json` of the saga; SagaNotFound when there is none."""
        ...

    def history(self, saga_id: str) -> list[dict[str, Any]]: ...

    def listing(self, query: ListQuery) -> Listing: ...

    def wait_ended(self, saga_id: str, timeout_s: float) -> dict[str, Any]:
        """The summary once the saga has ended, or as it is when ``timeout_s`` passes."""
        ...

    def update(self, saga_id: str, update: UpdateSaga, timeout_s: float
               ) -> dict[str, Any] | None:
        """Send the update and wait for the saga's answer: ``{"result"}`` or
        ``{"error"}``; None when none came in time."""
        ...

    def schedules(self) -> list[dict[str, Any]]:
        """Every schedule, as its saga last published it."""
        ...

    def close(self) -> None: ...


def _not_found(saga_id: str) -> SagaNotFound:
    return SagaNotFound(f"no saga {saga_id!r}", hint="check the id; a saga started a "
                        "moment ago may take a second to appear")


# ---- through the HTTP API ----------------------------------------------------------------
class HttpBackend:
    def __init__(self, api_url: str, *, token: str = "", timeout_s: float = 30.0) -> None:
        self._http = httpx.Client(base_url=api_url.rstrip("/"), timeout=timeout_s,
                                  headers={"authorization": f"Bearer {token}"} if token
                                  else None)
        self.url = api_url

    @classmethod
    def of(cls, settings: Settings) -> HttpBackend:
        """The API SAGA_API_URL names, with SAGA_API_TOKEN."""
        return cls(settings.api_url, token=settings.api_token.reveal())

    def start(self, saga_type: str, saga_id: str, saga_input: Any, wait_s: float
              ) -> bool | None:
        body = self._call("POST", "/api/sagas",
                          json={"type": saga_type, "id": saga_id, "input": saga_input})
        created: bool | None = body["created"]
        return created

    def send(self, saga_id: str, value: Input) -> None:
        path = f"/api/sagas/{_quoted(saga_id)}"
        match value:
            case DeliverSignal():
                self._call("POST", f"{path}/signals/{_quoted(value.name)}",
                           json={"payload": value.payload}, saga_id=saga_id)
            case CancelSaga():
                self._call("POST", f"{path}/cancel", json={"reason": value.reason},
                           saga_id=saga_id)
            case ResumeSaga():
                self._call("POST", f"{path}/resume", json={"reason": value.reason},
                           saga_id=saga_id)
            case AbandonSaga():
                self._call("POST", f"{path}/abandon", json={
                    "reason": value.reason, "compensate": value.compensate}, saga_id=saga_id)
            case _:
                raise ConfigError(f"the API takes no {type(value).__name__}")

    def summary(self, saga_id: str) -> dict[str, Any]:
        found: dict[str, Any] = self._call("GET", f"/api/sagas/{_quoted(saga_id)}",
                                           saga_id=saga_id)
        return found

    def history(self, saga_id: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self._every_page(
            f"/api/sagas/{_quoted(saga_id)}/history", {}, saga_id=saga_id)
        return rows

    def listing(self, query: ListQuery) -> Listing:
        params = {"status": query.status.value if query.status else None,
                  "type": query.saga_type, "id_prefix": query.id_prefix,
                  "started_after": query.started_after_ms,
                  "started_before": query.started_before_ms,
                  "ended_after": query.ended_after_ms, "ended_before": query.ended_before_ms,
                  "limit": query.limit, "cursor": query.cursor, "version": query.version,
                  "attribute": attribute_pairs(query.attributes) or None}
        body = self._call("GET", "/api/sagas",
                          params={k: v for k, v in params.items() if v is not None})
        return Listing(body["sagas"], body["next_cursor"])

    def wait_ended(self, saga_id: str, timeout_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            wait = max(0.0, min(60.0, deadline - time.monotonic()))
            try:
                self._call("GET", f"/api/sagas/{_quoted(saga_id)}/result",
                           params={"wait": round(wait, 3)}, saga_id=saga_id,
                           timeout=wait + 30)
            except ServerBusy:
                # The server holds all the waiting requests it takes: poll instead, at
                # the pace its Retry-After asks for.
                time.sleep(max(0.0, min(1.0, deadline - time.monotonic())))
            summary = self.summary(saga_id)
            if _ended(summary) or time.monotonic() >= deadline:
                return summary

    def update(self, saga_id: str, update: UpdateSaga, timeout_s: float
               ) -> dict[str, Any] | None:
        answer: dict[str, Any] = self._call(
            "POST", f"/api/sagas/{_quoted(saga_id)}/updates/{_quoted(update.name)}",
            json={"payload": update.payload, "update_id": update.update_id,
                  "wait": timeout_s}, saga_id=saga_id, timeout=timeout_s + 30)
        if answer.get("pending"):
            return None
        return answer

    def schedules(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self._every_page("/api/schedules", {})
        return found

    def get(self, path: str, **params: Any) -> Any:
        """Any GET of the API (the CLI's timers and dead letters); a list answered a page
        at a time comes whole."""
        return self._every_page(path, {k: v for k, v in params.items() if v is not None})

    def _every_page(self, path: str, params: dict[str, Any], *, saga_id: str | None = None
                    ) -> Any:
        """The answer to GET ``path``, with every further page its Link rel=next names
        (histories, dead letters and schedules come a page at a time)."""
        response = self._respond("GET", path, saga_id=saga_id, params=params)
        found = response.json()
        while isinstance(found, list) and "next" in response.links:
            # The server names the next page by its path and query, as it routes them.
            response = self._respond("GET", response.links["next"]["url"], saga_id=saga_id)
            found.extend(response.json())
        return found

    def post(self, path: str, body: Any) -> Any:
        """Any POST of the API (the CLI's redrive)."""
        return self._call("POST", path, json=body)

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, *, saga_id: str | None = None,
              timeout: float | None = None, **kwargs: Any) -> Any:
        return self._respond(method, path, saga_id=saga_id, timeout=timeout,
                             **kwargs).json()

    def _respond(self, method: str, path: str, *, saga_id: str | None = None,
                 timeout: float | None = None, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, timeout=timeout or httpx.USE_CLIENT_DEFAULT,
                                          **kwargs)
        except httpx.HTTPError as exc:
            raise KafkaUnavailable(f"the API at {self.url} did not answer: {exc}",
                                   hint="check that `saga server` runs there and "
                                   "SAGA_API_URL names it, then try again") from exc
        if response.status_code >= 400:
            raise _refusal(response, method, path, saga_id)
        return response


def _refusal(response: httpx.Response, method: str, path: str, saga_id: str | None
             ) -> SagaError:
    """The error an API refusal stands for: the class of its ``code`` (saga.errors'
    HTTP_ERRORS), whatever its wording; by its status when it has none (a proxy's page,
    a server older than codes)."""
    try:
        said = response.json()
    except ValueError:
        said = None
    if not isinstance(said, dict):
        said = {"error": response.text[:200]}
    error, hint = str(said.get("error")), said.get("hint")
    kind = error_of_code(said.get("code"))
    if kind is None:
        kind = (SagaNotFound if response.status_code == 404 and saga_id is not None
                else AccessDenied if response.status_code in (401, 403)
                else KafkaUnavailable if response.status_code >= 500 else RequestRefused)
    if kind is SagaNotFound and saga_id is not None:
        return _not_found(saga_id)
    if kind in (SagaNotFound, UnknownSagaType, UpdateRefused):  # about the saga: as said
        return kind(error, hint=hint)
    return kind(f"the API refused {method} {path} ({response.status_code}): {error}",
                hint=hint)


def _quoted(text: str) -> str:
    """``text`` as one path segment: every byte but the unreserved ones escaped (a / and
    a % too, so an id is never read as a path or an escape), and the segments . and ..,
    which URL libraries resolve away, as %2E."""
    quoted = quote(text, safe="")
    return quoted.replace(".", "%2E") if quoted in (".", "..") else quoted


# ---- straight through Kafka --------------------------------------------------------------
class KafkaBackend:
    def __init__(self, settings: Settings) -> None:
        if not settings.bootstrap_servers:
            raise ConfigError("the client needs the Kafka cluster or the API",
                              hint="pass bootstrap_servers= (or SAGA_BOOTSTRAP_SERVERS), or "
                              "api_url= (or SAGA_API_URL) for `saga server`")
        self.settings = settings
        self.codec = RecordCodec.for_settings(settings)
        self.journal = settings.topic("saga.journal")
        self.inbox = InboxProducer(settings)
        self._partitions: int | None = None

    def start(self, saga_type: str, saga_id: str, saga_input: Any, wait_s: float
              ) -> bool | None:
        partition = self._journal_partition(saga_id)
        dlq = self.settings.topic("saga.dlq")
        watcher = clients.consumer(self.settings.kafka,
                                   f"saga-client-{uuid.uuid4().hex}")
        try:
            # Watch from the ends as they are now: whatever our record causes comes after.
            ends = [(self.journal, partition)] + [
                (dlq, p) for p in clients.partitions_of(self.settings.kafka, dlq)]
            watcher.assign([TopicPartition(topic, p, clients.watermarks(watcher, topic, p)[1])
                            for topic, p in ends])
            inbox_partition, offset = self.inbox.deliver(saga_id, StartSaga(saga_type,
                                                                            saga_input))
            ours = f"{self.settings.topic('saga.inbox')}/{inbox_partition}/{offset}"
            return self._watch(watcher, ours, dlq, time.monotonic() + wait_s)
        finally:
            watcher.close()

    def _watch(self, watcher: Any, ours: str, dlq: str, deadline: float) -> bool | None:
        while time.monotonic() < deadline:
            for message in watcher.consume(100, 0.1):
                if message.error() is not None:
                    continue
                if message.topic() == dlq:
                    self._raise_if_ours(message.value(), ours)
                    continue
                try:
                    entry, cause = self.codec.decode_journal(message.value())
                except CodecError:
                    continue
                if cause != ours:
                    continue
                if isinstance(entry.event, ev.SagaStarted):
                    return True
                if isinstance(entry.event, ev.InputIgnored):
                    return False
        return None

    def _raise_if_ours(self, value: bytes | None, ours: str) -> None:
        try:
            letter = self.codec.decode_dead_letter(value)
        except CodecError:
            return
        where = f"{letter['source_topic']}/{letter['source_partition']}/{letter['source_offset']}"
        if where != ours:
            return
        if letter["reason"] == "unknown_saga_type":
            raise UnknownSagaType(letter["detail"], hint="start one of the workflow types "
                                  "the coordinators import (SAGA_WORKFLOWS)")
        raise SagaError(f"the start was refused: {letter['reason']}: {letter['detail']}",
                        hint="see `saga dlq list`")

    def send(self, saga_id: str, value: Input) -> None:
        self.inbox.deliver(saga_id, value)

    def update(self, saga_id: str, update: UpdateSaga, timeout_s: float
               ) -> dict[str, Any] | None:
        partition = self._journal_partition(saga_id)
        watcher = clients.consumer(self.settings.kafka,
                                   f"saga-client-{uuid.uuid4().hex}")
        try:
            end = clients.watermarks(watcher, self.journal, partition)[1]
            watcher.assign([TopicPartition(self.journal, partition, end)])
            # An update sent again (its id) was answered before: that answer, from the
            # saga's state; one not applied by now is applied after `end`, where we watch.
            held = self._fold_one(saga_id).updates.get(update.update_id)
            if held is not None:
                return {"error": held["error"]} if "error" in held else \
                    {"result": held["result"]}
            self.inbox.deliver(saga_id, update)
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                for message in watcher.consume(100, 0.1):
                    if message.error() is not None or message.key() != saga_id.encode():
                        continue
                    event = self.codec.decode_entry(message.value()).event
                    if isinstance(event, ev.UpdateApplied | ev.UpdateRejected) \
                            and event.update_id == update.update_id:
                        return {"result": event.result} if isinstance(
                            event, ev.UpdateApplied) else {"error": event.error}
            return None
        finally:
            watcher.close()

    def schedules(self) -> list[dict[str, Any]]:
        latest: dict[bytes, dict[str, Any] | None] = {}
        topic = self.settings.topic("saga.schedules")
        for record in clients.read_records(self.settings.kafka, topic):
            if record.key is None:
                continue
            latest[record.key] = None if record.value is None else \
                self.codec.decode_schedule(record.value)
        return sorted((e for e in latest.values() if e is not None),
                      key=lambda e: str(e["schedule_id"]))

    def summary(self, saga_id: str) -> dict[str, Any]:
        state = self._fold_one(saga_id)
        if not state.exists:
            raise _not_found(saga_id)
        return state.summary()

    def history(self, saga_id: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        self._fold_one(saga_id, on_entry=lambda entry: rows.append(entry.row()))
        if not rows:
            raise _not_found(saga_id)
        return rows

    def listing(self, query: ListQuery) -> Listing:
        starts: dict[int, int | None] = dict.fromkeys(
            clients.partitions_of(self.settings.kafka, self.journal))
        states: dict[str, SagaState] = {}
        for record in read_journal(self.settings.kafka, self.journal, starts,
                                   self.codec):
            if record.entry is not None:
                saga_id = record.entry.saga_id
                held = states.get(saga_id) or SagaState(saga_id)
                check_sequence(held, record.entry, f"{self.journal}/{record.partition}/"
                                                   f"{record.offset}")
                states[saga_id] = apply(held, record.entry)
        chosen = sorted((s for s in states.values() if s.exists and query.takes(s.summary())),
                        key=lambda s: (-s.started_at_ms, s.saga_id))
        skip = int(query.cursor) if query.cursor and query.cursor.isdigit() else 0
        page = chosen[skip:skip + query.limit]
        more = skip + query.limit < len(chosen)
        return Listing([s.summary() for s in page], str(skip + query.limit) if more else None)

    def wait_ended(self, saga_id: str, timeout_s: float) -> dict[str, Any]:
        partition = self._journal_partition(saga_id)
        reader = clients.consumer(self.settings.kafka,
                                  f"saga-client-{uuid.uuid4().hex}")
        state = SagaState(saga_id)
        deadline = time.monotonic() + timeout_s
        try:
            clients.assign(reader, [TopicPartition(self.journal, partition,
                                                   OFFSET_BEGINNING)])
            while not state.terminal and time.monotonic() < deadline:
                for message in reader.consume(500, 0.1):
                    if message.error() is None and message.key() == saga_id.encode():
                        state = apply(state, self.codec.decode_entry(message.value()))
        finally:
            reader.close()
        if not state.exists:
            raise _not_found(saga_id)
        return state.summary()

    def close(self) -> None:
        self.inbox.flush(10)

    def _journal_partition(self, saga_id: str) -> int:
        if self._partitions is None:
            self._partitions = len(clients.partitions_of(self.settings.kafka,
                                                         self.journal))
        return partition_of(saga_id, self._partitions)

    def _fold_one(self, saga_id: str,
                  on_entry: Callable[[ev.Entry], None] | None = None) -> SagaState:
        """The saga folded from its journal partition, read to its end."""
        partition = self._journal_partition(saga_id)
        key = saga_id.encode()
        state = SagaState(saga_id)
        for item in clients.read_to_end(self.settings.kafka, self.journal,
                                        {partition: None}):
            if isinstance(item, clients.EndOfPartition) or item.key() != key:
                continue
            entry = self.codec.decode_entry(item.value())
            check_sequence(state, entry, f"{self.journal}/{partition}/{item.offset()}")
            state = apply(state, entry)
            if on_entry is not None:
                on_entry(entry)
        return state


def _ended(summary: dict[str, Any]) -> bool:
    status = summary.get("status")
    return status is not None and SagaStatus(status).terminal
