"""SagaTestEnv: sagas, their services and durable time in one process, with no broker,
no RocksDB and no network, on virtual time.

It is a coordinator without Kafka, made of the coordinator's own parts: inputs cross
the same wire codec (saga/kafka/records.py) to the same Decider (saga/engine/decider.py,
built from Settings as the coordinator's is), whose journal entries cause the effects
saga/engine/effects.py names, as they do in the coordinator's outbox: commands go to
services answered through the service runner's code (saga/service/answer.py), timers
and reply deadlines wait on a virtual clock, child sagas get their start and their
parents the notice of their end. Work is done in arrival order; time moves only when a
test says so (``advance``) or waits for a saga's end (``result``, which jumps from one
due timer to the next while nothing else can happen).
"""

from __future__ import annotations

import functools
import heapq
import importlib
import itertools
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import ModuleType, TracebackType
from typing import Any

from saga.codec.avro import AvroCodec
from saga.config import Settings
from saga.engine import events as ev
from saga.engine.decider import Decider, RejectReason
from saga.engine.effects import (
    Effect,
    PublishSchedule,
    SendCommand,
    SendToSaga,
    StartTimer,
    StopTimer,
    effects_of,
)
from saga.engine.ids import idempotency_key
from saga.engine.inputs import (
    AbandonSaga,
    CancelSaga,
    DeliverSignal,
    FireTimer,
    Input,
    ResumeSaga,
    StartSaga,
    UpdateSaga,
)
from saga.engine.lifecycle import SagaStatus
from saga.engine.limits import decider_for
from saga.engine.replay import ReplayReport, verify_replay
from saga.engine.schedule import (
    BUILTINS,
    CONTROL_SIGNAL,
    SCHEDULE_TYPE,
    Control,
    ScheduleSpec,
    schedule_saga_id,
)
from saga.engine.state import SagaState
from saga.engine.workflow import WorkflowFn, WorkflowRegistry, default_registry
from saga.errors import (
    CodecError,
    SagaNotFound,
    SagaParkedError,
    SagaStalled,
    SagaTestError,
    UnhandledCommand,
    UnknownSagaType,
    UpdateRefused,
    WorkflowDefinitionError,
    did_not_complete,
)
from saga.kafka.records import DeadLetterReason, RecordCodec
from saga.service.answer import AnswerSource, answer_command, body_limit, reply_value
from saga.service.handlers import Service
from saga.service.state import BatchState, ServiceState
from saga.testing.services import MockFunction, MockHandler, Reply, ServiceDouble

#: Where the coordinator's commands ask services to reply (no prefix: nothing is sent).
_INBOX = "saga.inbox"
#: Virtual time a new environment starts at, unless told: a fixed instant, so that a
#: test's journal is the same on every run.
DEFAULT_START = datetime(2026, 1, 1, tzinfo=UTC)
#: Timers one call may fire before it gives up on a saga that never settles (a
#: compensation that keeps failing is retried for ever, a minute apart).
MAX_TIMERS = 10_000

Workflows = WorkflowRegistry | Iterable[WorkflowFn | ModuleType | str] | None


@dataclass(frozen=True)
class SentCommand:
    """A command a saga sent, as its journal records it (``CommandIssued``)."""

    saga_id: str
    service: str
    name: str
    kind: ev.CommandKind
    step: int
    attempt: int
    command_id: str
    #: the same for every attempt of the step: what the service deduplicates on
    idempotency_key: str
    input: Any
    sent_at: datetime

    @property
    def target(self) -> str:
        """``service.command``, e.g. ``payments.charge``."""
        return f"{self.service}.{self.name}"


@dataclass(frozen=True)
class ScheduledTimer:
    """A pending durable timer, or a step attempt's reply deadline (purpose timeout)."""

    saga_id: str
    timer_id: str
    purpose: ev.TimerPurpose
    due: datetime


@dataclass(frozen=True)
class DeadLetter:
    """An input the coordinator would have set aside in saga.dlq."""

    saga_id: str
    input: Input
    reason: RejectReason | DeadLetterReason
    detail: str


@dataclass(frozen=True)
class _Deliver:
    """An input for a saga, as its inbox record's value."""

    value: bytes


@dataclass(frozen=True)
class _Handle:
    """A command for a service, as its command record's value."""

    service: str
    saga_id: str
    value: bytes


@dataclass(frozen=True)
class _Answered:
    """A slow answer, due later: the handler's staged writes and its reply."""

    double: ServiceDouble
    saga_id: str
    batch: BatchState
    reply: bytes


@dataclass(frozen=True)
class _Due:
    """What fires next on the clock: a timer (or reply deadline), or a slow answer."""

    due_ms: int
    timer_id: str = ""
    saga_id: str = ""
    deadline: bool = False
    answered: _Answered | None = None


class SagaTestEnv:
    """Sagas, services and virtual time in one process. See docs/testing.md.

    ``workflows``: a WorkflowRegistry, or workflow functions, modules and module names;
    by default every ``@workflow`` imported so far (the built-in schedule workflow is
    always there). ``settings``: the limits the coordinator would run with (the step
    timeout, run budgets, payload limit); the defaults unless given, never the
    environment's SAGA_* variables. ``auto_advance``: ``result()`` jumps to the next
    timer whenever nothing else can happen (off: it never moves the clock).
    ``replay_every_decision``: decide every input as a freshly restarted coordinator
    would, replaying each saga from its stored state (catches workflows that are not
    deterministic; slower).
    """

    def __init__(self, workflows: Workflows = None, *, services: Iterable[Service] = (),
                 start_time: datetime | None = None, settings: Settings | None = None,
                 auto_advance: bool = True, replay_every_decision: bool = False) -> None:
        self.settings = settings or Settings()
        self.auto_advance = auto_advance
        self.replay_every_decision = replay_every_decision
        self._registry = registry_of(workflows)
        self._decider = self._new_decider()
        self._codec = RecordCodec(_avro(), max_payload_bytes=self.settings.max_payload_bytes)
        start = start_time or DEFAULT_START
        if start.tzinfo is None:
            raise SagaTestError("start_time must be timezone-aware",
                                hint="e.g. datetime(2026, 1, 1, tzinfo=UTC)")
        self._now_ms = int(start.timestamp() * 1000)
        self._states: dict[str, SagaState] = {}
        self._journals: dict[str, list[ev.Entry]] = {}
        self._work: deque[_Deliver | _Handle] = deque()
        self._timers: dict[str, tuple[str, ev.TimerScheduled]] = {}  # id -> (saga, timer)
        self._fired_deadlines: set[str] = set()
        self._answers: list[tuple[int, int, _Answered]] = []  # heap: (due, order, answer)
        self._order = itertools.count()
        self._doubles: dict[str, ServiceDouble] = {}
        self._sent: list[SentCommand] = []
        self._letters: list[DeadLetter] = []
        self._schedules: dict[str, dict[str, Any]] = {}
        self._closed = False
        self.register(*services)

    # ---- services ------------------------------------------------------------------
    def register(self, *services: Service) -> None:
        """Answer these services' commands with their own handlers and defaults, each
        service with an in-memory state of its own (empty at first; registered again,
        a service keeps its state and the mocks laid over it)."""
        for service in services:
            double = ServiceDouble.of(service)
            held = self._doubles.get(service.name)
            if held is not None:  # what it wrote, and its mocks, stay
                double.store = held.store
                for command, mock in held.mocks.items():
                    double.mock(command, mock)
            self._doubles[service.name] = double

    def mock(self, service: str, command: str, *replies: Reply | MockFunction) -> None:
        """Answer ``service.command`` with ``replies``, one per command received (the
        last repeats): Reply values, or functions of the Command (sync or async) that
        return a result or a Reply, or raise BusinessError (or anything else, a
        technical failure). It replaces a registered service's handler for that
        command only."""
        if not replies:
            raise SagaTestError(f"mock {service}.{command} without a reply",
                                hint="pass Reply.ok(...), Reply.business_error(...), "
                                "Reply.technical_error(...), Reply.never() or a function")
        double = self._doubles.get(service)
        if double is None:
            double = self._doubles[service] = ServiceDouble(service, Service(service),
                                                            real=False)
        double.mock(command, MockHandler(double, replies))

    def service_state(self, service: str) -> ServiceState:
        """What the service's handlers committed (its ``<service>.state`` changelog):
        ``get(key)``, ``scan(prefix)``, ``step_replies()``. Defaults are not state."""
        double = self._doubles.get(service)
        if double is None:
            raise SagaTestError(f"no service {service!r} is registered or mocked",
                                hint="env.register(service) or env.mock(...)")
        return double.store.state

    # ---- code ----------------------------------------------------------------------
    def deploy(self, workflows: Workflows) -> None:
        """Run other code from now on, as after a deploy: every saga replays from its
        stored state with the versions now registered (patches take the new branch
        only where a saga's history has not gone past them)."""
        self._registry = registry_of(workflows)
        self.restart()
        self._decider = self._new_decider()

    def restart(self) -> None:
        """Drop every live workflow coroutine, as a coordinator restart (or a
        rebalance) does: the next input of each saga replays it from its stored state."""
        self._decider.forget()
        self._states = {k: _stored(s) for k, s in self._states.items()}

    def verify_replay(self) -> ReplayReport:
        """Replay every saga's history with the registered code, as `saga verify-replay`
        does (the same code): which would diverge."""
        return verify_replay(self._registry, self._states.values())

    def _new_decider(self) -> Decider:
        return decider_for(self.settings, self._registry, cache_size=10_000)

    # ---- driving sagas -------------------------------------------------------------
    async def start(self, saga_type: str, saga_id: str, input: Any = None
                    ) -> SagaTestHandle:
        """Start a saga and run it as far as it goes without the clock moving."""
        created = saga_id not in self._states
        await self._send(saga_id, StartSaga(saga_type, input))
        return SagaTestHandle(self, saga_id, created)

    async def signal(self, saga_id: str, name: str, payload: Any = None) -> None:
        await self._send(saga_id, DeliverSignal(name, payload))

    async def cancel(self, saga_id: str, reason: str = "cancelled by a test") -> None:
        """Stop the saga and compensate what it did; it ends CANCELLED."""
        await self._send(saga_id, CancelSaga(reason))

    async def resume(self, saga_id: str, reason: str = "resumed by a test") -> None:
        """A PARKED saga replays with the code now registered (see ``deploy``)."""
        await self._send(saga_id, ResumeSaga(reason))

    async def abandon(self, saga_id: str, reason: str = "abandoned by a test", *,
                      compensate: bool = False) -> None:
        await self._send(saga_id, AbandonSaga(reason, compensate))

    async def update(self, saga_id: str, name: str, payload: Any = None, *,
                     update_id: str | None = None) -> Any:
        """Ask the saga's ``ctx.on_update(name, ...)`` handler for a value: the value,
        or UpdateRefused. Sent again with the same ``update_id``, it is answered as the
        first time and applied once."""
        chosen = update_id or f"update-{next(self._order)}"
        await self._send(saga_id, UpdateSaga(chosen, name, payload))
        answer = self._state(saga_id).updates.get(chosen, {})
        if "error" in answer or "result" not in answer:
            raise UpdateRefused(f"saga {saga_id} refused update {name!r}: "
                                f"{answer.get('error', 'no answer')}")
        return answer["result"]

    async def create_schedule(self, schedule_id: str, *, cron: str, saga_type: str,
                              input: Any = None, timezone: str = "UTC",
                              overlap: str = "skip", catchup_window_s: float = 60.0
                              ) -> SagaTestHandle:
        """A schedule (the saga ``schedule:<id>``), as the client creates one."""
        spec = ScheduleSpec.of({"schedule_id": schedule_id, "cron": cron,
                                "saga_type": saga_type, "input": input, "timezone": timezone,
                                "overlap": overlap, "catchup_window_s": catchup_window_s})
        return await self.start(SCHEDULE_TYPE, schedule_saga_id(schedule_id),
                                {"spec": spec.to_json()})

    async def control_schedule(self, schedule_id: str, op: Control | str) -> None:
        """pause, resume, trigger (a run now) or delete a schedule."""
        await self.signal(schedule_saga_id(schedule_id), CONTROL_SIGNAL,
                          {"op": Control(op).value})

    def schedules(self) -> list[dict[str, Any]]:
        """The schedule catalog (`saga schedule list`): what each schedule published."""
        return [self._schedules[k] for k in sorted(self._schedules)]

    # ---- time ----------------------------------------------------------------------
    def now(self) -> datetime:
        return datetime.fromtimestamp(self._now_ms / 1000, tz=UTC)

    @property
    def now_ms(self) -> int:
        return self._now_ms

    async def advance(self, duration: timedelta) -> None:
        """Move the clock on by ``duration``, firing every timer and deadline that falls
        due on the way at its due time, and delivering slow answers when they come."""
        step = int(duration.total_seconds() * 1000)
        if step < 0:
            raise SagaTestError("the clock only goes forward",
                                hint="advance by a positive duration")
        target = self._now_ms + step
        await self._settle()
        fired = 0
        while (due := self._next_due()) is not None and due.due_ms <= target:
            fired += 1
            if fired > MAX_TIMERS * 10:
                raise SagaStalled(f"more than {MAX_TIMERS * 10} timers fell due in one "
                                  f"advance (now {self.now().isoformat()}): a loop that "
                                  "waits for no time?", hint="advance by less, or look at "
                                  "the timers (env.timers())")
            self._fire(due)
            await self._settle()
        self._now_ms = target
        await self._settle()

    async def result(self, saga_id: str, *, max_timers: int = MAX_TIMERS) -> Any:
        """Run until the saga ends; its result. Ended otherwise than COMPLETED:
        SagaCompensated, SagaFailed or SagaCancelled (SagaDidNotComplete), as from the
        client. PARKED: SagaParkedError. Unable to go on: SagaStalled, which says what
        it waits for. With auto_advance the clock jumps to each next timer meanwhile."""
        await self._settle()
        fired = 0
        while True:
            state = self._state(saga_id)
            if state.terminal:
                break
            if state.status is SagaStatus.PARKED:
                raise SagaParkedError(f"saga {saga_id} parked: {state.error}")
            due = self._next_due()
            if due is None:
                raise SagaStalled(f"saga {saga_id} is {state.status} and nothing is due: "
                                  f"{self._waits(state)}")
            if not self.auto_advance:
                raise SagaStalled(f"saga {saga_id} is {state.status} ({self._waits(state)}); "
                                  f"the next timer is due at "
                                  f"{_iso(due.due_ms)} and auto_advance is off",
                                  hint="env.advance(...) to it, or send what it waits for")
            if fired >= max_timers:
                raise SagaStalled(f"saga {saga_id} is still {state.status} after {fired} "
                                  f"timers, at {self.now().isoformat()}; last error: "
                                  f"{state.last_error or 'none'}",
                                  hint="a compensation that keeps failing is retried for "
                                  "ever: see env.journal(saga_id)")
            fired += 1
            self._fire(due)
            await self._settle()
        if state.status is SagaStatus.COMPLETED:
            return state.result
        assert state.status is not None
        raise did_not_complete(saga_id, state.status.value, state.error, state.result)

    # ---- reading -------------------------------------------------------------------
    def sagas(self) -> list[str]:
        return sorted(self._states)

    def state(self, saga_id: str) -> SagaState:
        """The saga's state, as the coordinator's projection holds it."""
        return self._state(saga_id)

    def status(self, saga_id: str) -> SagaStatus | None:
        return self._state(saga_id).status

    def journal(self, saga_id: str) -> list[ev.Entry]:
        """Every entry the saga's journal holds, every run's, in order."""
        self._state(saga_id)
        return list(self._journals.get(saga_id, []))

    def history(self, saga_id: str) -> list[dict[str, Any]]:
        """The current run's entries as `saga history ID --json` prints them (what
        saga.testing.load_history reads back)."""
        first = max(0, self._state(saga_id).run_started_seq - 1)  # from its SagaContinued
        return [e.row() for e in self._journals.get(saga_id, []) if e.seq >= first]

    def commands(self, saga_id: str | None = None, *, service: str | None = None
                 ) -> list[SentCommand]:
        """The commands sent, in the order they were sent (each saga's, or all)."""
        return [c for c in self._sent if (saga_id is None or c.saga_id == saga_id)
                and (service is None or c.service == service)]

    def timers(self, saga_id: str | None = None) -> list[ScheduledTimer]:
        """Pending timers and running reply deadlines, earliest first."""
        found = [ScheduledTimer(due.saga_id, due.timer_id, purpose, _at(due.due_ms))
                 for due, purpose in self._pending()
                 if saga_id is None or due.saga_id == saga_id]
        return sorted(found, key=lambda t: (t.due, t.timer_id))

    @property
    def dead_letters(self) -> list[DeadLetter]:
        """Inputs the coordinator would have dead-lettered (saga.dlq)."""
        return list(self._letters)

    # ---- lifecycle -----------------------------------------------------------------
    def close(self) -> None:
        """Close every live workflow coroutine (their ``finally`` blocks run)."""
        self._closed = True
        self._decider.forget()

    def __enter__(self) -> SagaTestEnv:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    async def __aenter__(self) -> SagaTestEnv:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        trace: TracebackType | None) -> None:
        self.close()

    # ---- the inbox -----------------------------------------------------------------
    async def _send(self, saga_id: str, message: Input) -> None:
        if self._closed:
            raise SagaTestError("the environment is closed", hint="use a new SagaTestEnv")
        await self._settle()
        self._decide(self._codec.encode_inbox(saga_id, message), from_test=True)
        await self._settle()

    async def _settle(self) -> None:
        """Do all the work there is at this instant, in arrival order, and fire what
        falls due at it (a zero delay is due at once, as the coordinator's wheel sees it
        on its next turn)."""
        fired = 0
        while True:
            while self._work:
                item = self._work.popleft()
                if isinstance(item, _Deliver):
                    self._decide(item.value)
                else:
                    await self._handle(item)
            due = self._next_due()
            if due is None or due.due_ms > self._now_ms:
                return
            fired += 1
            if fired > MAX_TIMERS:
                raise SagaStalled(f"more than {MAX_TIMERS} timers fell due at "
                                  f"{self.now().isoformat()} without the clock moving: a "
                                  "loop that waits for no time?",
                                  hint="look at the timers (env.timers()) and journals")
            self._fire(due)

    def _decide(self, value: bytes, *, from_test: bool = False) -> None:
        """One input, as the coordinator decides it: read off the wire, decided on the
        saga's state, its entries' effects carried out."""
        message = self._codec.decode_inbox(value)
        saga_id, received = message.saga_id, message.value
        state = self._states.get(saga_id)
        if self.replay_every_decision:
            self._decider.forget()
            state = _stored(state) if state is not None else None
        try:
            decision = self._decider.decide(saga_id, state, received, self._now_ms)
        except Exception as exc:
            # The coordinator keeps the input, with why, and goes on: so does a test.
            self._decider.forget([saga_id])
            self._letter(saga_id, received, DeadLetterReason.DECISION_FAILED,
                         f"{type(exc).__name__}: {exc}")
            if from_test:
                raise
            return
        if decision.rejection is not None:
            rejection = decision.rejection
            self._letter(saga_id, received, rejection.reason, rejection.detail)
            if from_test:
                raise _refused(saga_id, rejection.reason, rejection.detail)
            return
        if not decision.entries or decision.state is None:
            return
        after, entries = decision.state, decision.entries
        try:
            for entry in entries:
                self._codec.encode_entry(entry)
            planned = [(effect, self._wire(after, effect)) for entry in entries
                       for effect in effects_of(after, entry)]
        except CodecError as exc:
            # What the saga decided cannot be written: the coordinator dead-letters the
            # input and parks the saga where its stored state left it.
            self._letter(saga_id, received, DeadLetterReason.UNENCODABLE_DECISION,
                         f"{type(exc).__name__}: {exc}")
            if state is None:
                return
            parked = self._decider.park(saga_id, state, ev.ParkReason.UNENCODABLE,
                                        f"its decision could not be encoded: {exc}",
                                        self._now_ms)
            if not parked.entries or parked.state is None:
                return
            after, entries, planned = parked.state, parked.entries, []
        self._states[saga_id] = after
        self._journals.setdefault(saga_id, []).extend(entries)
        for effect, wire in planned:
            self._carry_out(after, effect, wire)

    def _wire(self, state: SagaState, effect: Effect) -> bytes | None:
        """The record an effect is sent as (the coordinator's outbox encodes the same)."""
        if isinstance(effect, SendCommand):
            return self._codec.encode_command(state.saga_id, state.saga_type, effect.event,
                                              _INBOX, effect.at_ms)
        if isinstance(effect, SendToSaga):
            return self._codec.encode_inbox(effect.saga_id, effect.input,
                                            message_id=effect.message_id)
        if isinstance(effect, PublishSchedule) and effect.published is not None:
            return self._codec.encode_schedule(effect.schedule_id, state.saga_id,
                                               effect.published, effect.at_ms)
        return None

    def _carry_out(self, state: SagaState, effect: Effect, wire: bytes | None) -> None:
        if isinstance(effect, SendCommand):
            event = effect.event
            assert wire is not None
            self._sent.append(SentCommand(
                state.saga_id, event.service, event.name, event.kind, event.step,
                event.attempt, event.command_id, idempotency_key(event.command_id),
                event.input, _at(effect.at_ms)))
            self._work.append(_Handle(event.service, state.saga_id, wire))
        elif isinstance(effect, StartTimer):
            self._timers[effect.event.timer_id] = (state.saga_id, effect.event)
        elif isinstance(effect, StopTimer):
            self._timers.pop(effect.timer_id, None)
        elif isinstance(effect, SendToSaga):
            assert wire is not None
            self._work.append(_Deliver(wire))
        elif wire is None:
            self._schedules.pop(effect.schedule_id, None)
        else:
            self._schedules[effect.schedule_id] = self._codec.decode_schedule(wire)

    def _letter(self, saga_id: str, received: Input, reason: RejectReason | DeadLetterReason,
                detail: str) -> None:
        self._letters.append(DeadLetter(saga_id, received, reason, detail))

    # ---- services ------------------------------------------------------------------
    async def _handle(self, item: _Handle) -> None:
        command = self._codec.decode_command(item.value)
        double = self._doubles.get(item.service)
        if double is None or not double.answers(command["name"]):
            raise UnhandledCommand(
                f"saga {item.saga_id} sent {item.service}.{command['name']} (command "
                f"{command['command_id']}) and no "
                f"{'mock answers it' if double else 'service of that name is registered'}")
        if item.saga_id in double.busy:  # behind a slow answer, as in its partition
            double.waiting.setdefault(item.saga_id, deque()).append(item)
            return
        batch = BatchState(double.store)
        double.verdict = None
        answer = await answer_command(double.service, command, batch,
                                      handler_timeout_s=self.settings.handler_timeout_s,
                                      max_payload_bytes=body_limit(self.settings))
        verdict = double.verdict if answer.source is AnswerSource.HANDLER else None
        double.verdict = None
        if verdict is not None and verdict.outcome is None:
            return  # never answered: nothing is committed, nothing is sent
        reply = reply_value(self._codec, double.name, command, answer.reply)
        answered = _Answered(double, item.saga_id, batch, reply)
        after = int(verdict.after.total_seconds() * 1000) if verdict is not None else 0
        if after <= 0:
            self._commit(answered)
            return
        double.busy.add(item.saga_id)
        heapq.heappush(self._answers, (self._now_ms + after, next(self._order), answered))

    def _commit(self, answered: _Answered) -> None:
        """The handler's writes and its reply, committed together (one transaction on
        Kafka); the commands that waited behind it come next."""
        double = answered.double
        double.store.apply(answered.batch.changes.values())
        self._work.append(_Deliver(answered.reply))
        double.busy.discard(answered.saga_id)
        waiting = double.waiting.pop(answered.saga_id, deque())
        self._work.extendleft(reversed(waiting))

    # ---- the clock -----------------------------------------------------------------
    def _pending(self) -> Iterator[tuple[_Due, ev.TimerPurpose]]:
        """Every pending timer and running reply deadline, with its purpose: what
        ``timers()`` shows is what the clock fires."""
        for timer_id, (owner, timer) in self._timers.items():
            yield _Due(timer.due_ms, timer_id, owner), timer.purpose
        for owner, state in self._states.items():
            for timer_id, due in state.deadlines().items():
                if timer_id not in self._fired_deadlines:
                    yield _Due(due, timer_id, owner, deadline=True), ev.TimerPurpose.TIMEOUT

    def _next_due(self) -> _Due | None:
        found: list[tuple[int, int, str, _Due]] = [
            (due.due_ms, 0, due.timer_id, due) for due, _ in self._pending()]
        if self._answers:
            due, _, answered = self._answers[0]
            found.append((due, 1, "", _Due(due, answered=answered)))
        return min(found, key=lambda f: f[:3])[3] if found else None

    def _fire(self, due: _Due) -> None:
        """Move the clock to ``due`` and carry it out: a timer's FireTimer into the
        saga's inbox, or a slow answer committed."""
        self._now_ms = max(self._now_ms, due.due_ms)
        if due.answered is not None:
            heapq.heappop(self._answers)
            self._commit(due.answered)
        else:
            if due.deadline:
                self._fired_deadlines.add(due.timer_id)
            else:
                self._timers.pop(due.timer_id, None)
            self._work.append(_Deliver(self._codec.encode_inbox(
                due.saga_id, FireTimer(due.timer_id, due.due_ms),
                message_id=f"timer:{due.timer_id}")))

    # ---- helpers -------------------------------------------------------------------
    def _state(self, saga_id: str) -> SagaState:
        state = self._states.get(saga_id)
        if state is None:
            raise SagaNotFound(f"no saga {saga_id!r} in this test",
                               hint=f"started so far: {', '.join(self.sagas()) or 'none'}")
        return state

    def _waits(self, state: SagaState) -> str:
        """What a saga waits for, in words."""
        waits = [f"signal {name!r}" for name in sorted(set(state.waits.values()))]
        waits += [f"a reply to {s.service}.{s.name} (attempt {s.attempt})"
                  for s in state.steps.values() if s.outcome is None]
        waits += [f"a reply to {c.service}.{c.name} (compensation attempt {c.attempt})"
                  for c in state.compensations.values() if c.outcome is None]
        waits += [f"child {c.child_id}" for c in state.children.values() if not c.done]
        said = "waits for " + ", ".join(waits) if waits else "waits for nothing known"
        letters = [f"{d.reason} ({d.detail})" for d in self._letters
                   if d.saga_id == state.saga_id]
        return said + (f"; dead-lettered: {'; '.join(letters)}" if letters else "")


@dataclass(frozen=True)
class SagaTestHandle:
    """A saga of a SagaTestEnv, for short: ``await handle.result()``."""

    env: SagaTestEnv
    saga_id: str
    #: False when a saga of that id existed already (the start changed nothing)
    created: bool = True

    async def result(self, *, max_timers: int = MAX_TIMERS) -> Any:
        return await self.env.result(self.saga_id, max_timers=max_timers)

    async def signal(self, name: str, payload: Any = None) -> None:
        await self.env.signal(self.saga_id, name, payload)

    async def cancel(self, reason: str = "cancelled by a test") -> None:
        await self.env.cancel(self.saga_id, reason)

    async def update(self, name: str, payload: Any = None, *, update_id: str | None = None
                     ) -> Any:
        return await self.env.update(self.saga_id, name, payload, update_id=update_id)

    @property
    def status(self) -> SagaStatus | None:
        return self.env.status(self.saga_id)

    @property
    def state(self) -> SagaState:
        return self.env.state(self.saga_id)

    def journal(self) -> list[ev.Entry]:
        return self.env.journal(self.saga_id)

    def history(self) -> list[dict[str, Any]]:
        return self.env.history(self.saga_id)

    def commands(self) -> list[SentCommand]:
        return self.env.commands(self.saga_id)

    def timers(self) -> list[ScheduledTimer]:
        return self.env.timers(self.saga_id)


def registry_of(workflows: Workflows) -> WorkflowRegistry:
    """A registry of ``workflows`` (see SagaTestEnv), with the built-in workflows."""
    if workflows is None:
        registry = WorkflowRegistry(default_registry.definitions())
    elif isinstance(workflows, WorkflowRegistry):
        registry = WorkflowRegistry(workflows.definitions())
    else:
        registry = WorkflowRegistry()
        for item in workflows:
            for definition in _definitions_of(item):
                registry.add(definition)
    return registry.include(BUILTINS)


def _definitions_of(item: WorkflowFn | ModuleType | str) -> list[Any]:
    if isinstance(item, str):
        item = importlib.import_module(item)
    if isinstance(item, ModuleType):
        found = [d for d in default_registry.definitions() if d.fn.__module__ == item.__name__]
        if not found:
            raise WorkflowDefinitionError(f"module {item.__name__} declares no @workflow",
                                          hint="name the module that holds the workflows")
        return found
    declared = getattr(item, "__saga_workflow__", None)
    definition = default_registry.get(*declared) if declared else None
    if definition is None or definition.fn is not item:
        raise WorkflowDefinitionError(
            f"{getattr(item, '__qualname__', item)!r} is not a @workflow of the default "
            "registry", hint="decorate it with @workflow(name, version), or pass the "
            "WorkflowRegistry it was declared in")
    return [definition]


def _refused(saga_id: str, reason: RejectReason, detail: str
             ) -> SagaTestError | SagaNotFound | UnknownSagaType:
    if reason == RejectReason.UNKNOWN_SAGA_TYPE:
        return UnknownSagaType(detail, hint="pass the workflow to SagaTestEnv(workflows=...) "
                               "or import its module before creating the environment")
    if reason == RejectReason.UNKNOWN_SAGA:
        return SagaNotFound(detail, hint="start it first (env.start)")
    return SagaTestError(f"saga {saga_id}: the input was dead-lettered: {reason}: {detail}",
                         hint="as the coordinator would; env.dead_letters holds it")


@functools.cache
def _avro() -> AvroCodec:
    """The schemas, parsed once for every environment (the codec holds no state)."""
    return AvroCodec()


def _stored(state: SagaState) -> SagaState:
    """The state as a restarted coordinator reads it back from its projection."""
    return SagaState.from_json(state.to_json())


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def _iso(ms: int) -> str:
    return _at(ms).isoformat()

