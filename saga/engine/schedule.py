"""Schedules: a saga that starts sagas on a cron schedule, built into every coordinator.

A schedule is the saga ``schedule:<id>`` of type ``saga.schedule``: its input is the
spec, it sleeps (a durable timer) until the next slot, and starts that slot's saga as
a child with the id ``<id>@<slot>``, so through any restart each slot starts exactly
one saga (the start is journaled with the decision, and the id is the slot's). Its
controls (pause, resume, trigger, delete) are the signal ``schedule.control``. After
downtime the slots it missed are run if they fall within the catch-up window, as the
overlap policy says: ``skip`` (the default) starts the latest one, and none while the
last run goes on; ``buffer`` queues them and starts one after another; ``allow`` starts
them all. It continues as new every hundred wake-ups, so its history stays small.

What it is doing is published as its ``schedule`` attribute, which the coordinator
writes to the compacted topic ``saga.schedules`` (the catalog `saga schedule list`
reads) and the visibility server indexes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from saga.engine.context import ChildHandle, SagaContext
from saga.engine.workflow import WorkflowRegistry, workflow
from saga.errors import ConfigError

SCHEDULE_TYPE = "saga.schedule"
CONTROL_SIGNAL = "schedule.control"
#: Wake-ups per run before the schedule continues as new.
_WAKES_PER_RUN = 100
#: The most slots one wake-up looks at (a tiny interval after a long downtime).
_MAX_SLOTS = 1000
#: Slots this late are still "on time": the wheel's tick and a busy coordinator.
_ON_TIME_MS = 5_000


class Overlap(StrEnum):
    SKIP = "skip"  # none while the last run goes on; after downtime, the latest slot only
    BUFFER = "buffer"  # one after another
    ALLOW = "allow"  # every slot, whatever is running


class Control(StrEnum):
    PAUSE = "pause"
    RESUME = "resume"
    TRIGGER = "trigger"
    DELETE = "delete"


def schedule_saga_id(schedule_id: str) -> str:
    return f"schedule:{schedule_id}"


@dataclass(frozen=True)
class ScheduleSpec:
    schedule_id: str
    cron: str
    saga_type: str
    input: Any = None
    timezone: str = "UTC"
    overlap: Overlap = Overlap.SKIP
    catchup_window_s: float = 60.0
    paused: bool = False

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "overlap": self.overlap.value}

    @classmethod
    def of(cls, raw: dict[str, Any]) -> ScheduleSpec:
        """A spec from JSON, checked: a clear error for a bad cron, zone or policy."""
        try:
            spec = cls(**{**raw, "overlap": Overlap(raw.get("overlap", "skip"))})
        except ValueError as exc:
            raise ConfigError(f"overlap must be skip, buffer or allow: {exc}",
                              hint="--overlap skip|buffer|allow") from exc
        except TypeError as exc:
            raise ConfigError(f"a schedule spec does not fit: {exc}") from exc
        if not spec.schedule_id or "\x00" in spec.schedule_id:
            raise ConfigError("a schedule needs a non-empty id")
        if not croniter.is_valid(spec.cron):
            raise ConfigError(f"{spec.cron!r} is not a cron expression",
                              hint="five fields, minute hour day month weekday (e.g. "
                              "'0 9 * * 1-5'), or six with seconds last")
        try:
            ZoneInfo(spec.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ConfigError(f"unknown time zone {spec.timezone!r}",
                              hint="an IANA name such as Europe/Berlin, or UTC") from exc
        if spec.catchup_window_s < 0:
            raise ConfigError("the catch-up window cannot be negative")
        return spec


def slots_after(spec: ScheduleSpec, after_ms: int, until_ms: int) -> list[int]:
    """The slots (epoch ms) in (after_ms, until_ms], at most _MAX_SLOTS of the latest."""
    zone = ZoneInfo(spec.timezone)
    walker = croniter(spec.cron, datetime.fromtimestamp(after_ms / 1000, tz=UTC)
                      .astimezone(zone))
    slots: list[int] = []
    while True:
        slot = int(walker.get_next(datetime).timestamp() * 1000)
        if slot > until_ms:
            return slots
        slots.append(slot)
        if len(slots) > _MAX_SLOTS:
            del slots[0]


def next_slot(spec: ScheduleSpec, after_ms: int) -> int:
    zone = ZoneInfo(spec.timezone)
    walker = croniter(spec.cron, datetime.fromtimestamp(after_ms / 1000, tz=UTC)
                      .astimezone(zone))
    return int(walker.get_next(datetime).timestamp() * 1000)


def _slot_name(slot_ms: int) -> str:
    return datetime.fromtimestamp(slot_ms / 1000, tz=UTC).strftime("%Y%m%dT%H%M%SZ")


#: Workflows every coordinator runs, whatever SAGA_WORKFLOWS says.
BUILTINS = WorkflowRegistry()


@workflow(SCHEDULE_TYPE, registry=BUILTINS)
async def run_schedule(ctx: SagaContext, raw: dict[str, Any]) -> dict[str, Any]:
    spec = ScheduleSpec.of(raw["spec"])
    paused = spec.paused
    last = int(raw.get("last_slot_ms") or ctx.now().timestamp() * 1000)
    queued: list[int] = list(raw.get("queued", []))
    runs: int = raw.get("runs", 0)
    running: ChildHandle | None = None
    last_run: str | None = raw.get("last_run")

    def start(slot_ms: int, label: str) -> None:
        nonlocal running, runs, last_run
        running = ctx.child(spec.saga_type, spec.input,
                            id=f"{spec.schedule_id}@{label}")
        runs += 1
        last_run = running.child_id

    def going() -> bool:
        return running is not None and not running.done

    wakes = 0
    while True:
        if wakes >= _WAKES_PER_RUN and not going() and not queued:
            # nothing of this run is needed any more: begin a fresh, small one
            ctx.continue_as_new({"spec": {**spec.to_json(), "paused": paused},
                                 "last_slot_ms": last, "runs": runs, "last_run": last_run})
        wakes += 1
        now = int(ctx.now().timestamp() * 1000)
        due = slots_after(spec, last, now)
        if due:
            last = due[-1]
            window = max(spec.catchup_window_s * 1000, _ON_TIME_MS)
            due = [slot for slot in due if now - slot <= window]
        if due and not paused:
            if spec.overlap is Overlap.ALLOW:
                for slot in due:
                    start(slot, _slot_name(slot))
            elif spec.overlap is Overlap.SKIP:
                if not going():
                    start(due[-1], _slot_name(due[-1]))
            else:
                queued.extend(due)
        if queued and not going() and not paused:
            slot = queued.pop(0)
            start(slot, _slot_name(slot))
        upcoming = next_slot(spec, max(last, now))
        ctx.set_attributes({"schedule": {**spec.to_json(), "paused": paused, "runs": runs,
                                         "last_slot_ms": last, "next_slot_ms": upcoming,
                                         "queued": len(queued), "last_run": last_run}})
        control = await ctx.wait_signal(
            CONTROL_SIGNAL, timeout=timedelta(milliseconds=max(0, upcoming - now)),
            until=(lambda: not going()) if queued and going() else None)
        if control is None:
            continue
        op = control.get("op") if isinstance(control, dict) else None
        if op == Control.PAUSE:
            paused = True
        elif op == Control.RESUME:
            paused = False
        elif op == Control.DELETE:
            ctx.set_attributes({"schedule": None})
            return {"deleted": True, "runs": runs}
        elif op == Control.TRIGGER and (spec.overlap is not Overlap.SKIP or not going()):
            start(now, f"manual-{ctx.uuid()[:8]}")
