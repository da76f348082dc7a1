"""Invariant checks over what is really on the topics and in the stores (DESIGN.md §7).

Used by `make demo`, the system tests and the benchmarks. They read the command topics
read_committed, as any outside auditor would, rather than trusting the coordinator.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from saga.config import KafkaConnection, Settings
from saga.engine import events as ev
from saga.engine.ids import idempotency_key
from saga.engine.inputs import CommandReply, ReplyOutcome
from saga.engine.lifecycle import SagaStatus
from saga.engine.state import SagaState
from saga.errors import CodecError
from saga.kafka import clients
from saga.kafka.records import RecordCodec


def read_topic(kafka: KafkaConnection, topic: str) -> list[tuple[bytes | None, bytes | None, Any]]:
    """(key, value, headers) of every committed record of ``topic``, start to end."""
    return [(r.key, r.value, r.headers) for r in clients.read_records(kafka, topic)]


@dataclass
class CommandAudit:
    commands: list[dict[str, Any]] = field(default_factory=list)

    @property
    def duplicates(self) -> dict[str, int]:
        counts = Counter(c["command_id"] for c in self.commands)
        return {cid: n for cid, n in counts.items() if n > 1}

    def by_saga(self) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for command in self.commands:
            out.setdefault(command["saga_id"], []).append(command)
        return out


def audit_commands(settings: Settings, services: Iterable[str]) -> CommandAudit:
    messages = RecordCodec.for_settings(settings)
    audit = CommandAudit()
    for service in services:
        for _, value, _ in read_topic(settings.kafka,
                                      settings.topic(f"{service}.commands")):
            try:
                audit.commands.append(messages.decode_command(value))
            except CodecError:  # counted all the same, by what its envelope says
                audit.commands.append({**messages.command_envelope(value), "body": None,
                                       "undecodable": True})
    return audit


def compensations_newest_first(state: SagaState, history: list[ev.Entry]) -> bool:
    """True when first attempts of compensations ran in reverse completion order."""
    order = [e.event.step for e in history if isinstance(e.event, ev.CommandIssued)
             and e.event.kind == ev.CommandKind.COMPENSATION and e.event.attempt == 1]
    completed = [state.steps[step].completed_order for step in order]
    return completed == sorted(completed, reverse=True)


def order_violations(states: Mapping[str, SagaState], expected: Iterable[str],
                     audit: CommandAudit, ledger: list[dict[str, Any]],
                     histories: Mapping[str, list[ev.Entry]] | None = None) -> list[str]:
    """Invariants 1-3 for the order saga; empty when all hold."""
    problems: list[str] = []
    expected = list(expected)
    missing = [s for s in expected if s not in states]
    stuck = [s for s in expected if s in states and not states[s].terminal]
    if missing:
        problems.append(f"invariant 1: {len(missing)} sagas never appeared, e.g. {missing[:5]}")
    if stuck:
        stuck_sample = [(s, states[s].status, states[s].last_error) for s in stuck[:5]]
        problems.append(f"invariant 1: {len(stuck)} sagas are not terminal, "
                        f"e.g. {stuck_sample}")
    if audit.duplicates:
        problems.append(f"invariant 2: {len(audit.duplicates)} command ids appear more than "
                        f"once on the command topics, e.g. {list(audit.duplicates)[:5]}")
    charges = Counter(e["saga_id"] for e in ledger if e["type"] == "charge")
    refunds = Counter(e["saga_id"] for e in ledger if e["type"] == "refund")
    for saga_id in expected:
        state = states.get(saga_id)
        if state is None or not state.terminal:
            continue
        out_of_stock = isinstance(state.result, dict) and \
            state.result.get("reason") == "out_of_stock"
        if out_of_stock and (charges[saga_id], refunds[saga_id]) != (1, 1):
            problems.append(f"invariant 3: out-of-stock {saga_id} has {charges[saga_id]} "
                            f"charge(s) and {refunds[saga_id]} refund(s), not 1 and 1")
        if state.status is SagaStatus.COMPLETED and (charges[saga_id], refunds[saga_id]) \
                != (1, 0):
            problems.append(f"invariant 3: completed {saga_id} has {charges[saga_id]} "
                            f"charge(s) and {refunds[saga_id]} refund(s)")
        if histories is not None and saga_id in histories and \
                not compensations_newest_first(state, histories[saga_id]):
            problems.append(f"invariant 3: {saga_id} compensated out of order")
    orphans = [s for s in refunds if charges[s] == 0]
    if orphans:
        problems.append(f"invariant 3: refunds without a charge for {orphans[:5]}")
    return problems


def path_violations(states: Mapping[str, SagaState], picked: Iterable[str],
                    never_picked: Iterable[str], out_of_stock: Iterable[str],
                    alerted_orders: Counter[str]) -> list[str]:
    """Each of the order saga's three paths ended the way it should."""
    problems = []
    for saga_id in picked:
        state = states.get(saga_id)
        if state is None or state.status is not SagaStatus.COMPLETED or alerted_orders[saga_id]:
            problems.append(f"picked order {saga_id}: {state and state.status}, "
                            f"{alerted_orders[saga_id]} alert(s); want COMPLETED, no alert")
    for saga_id in never_picked:
        state = states.get(saga_id)
        if state is None or state.status is not SagaStatus.COMPLETED \
                or alerted_orders[saga_id] != 1:
            problems.append(f"never-picked order {saga_id}: {state and state.status}, "
                            f"{alerted_orders[saga_id]} alert(s); want COMPLETED, one alert")
    for saga_id in out_of_stock:
        state = states.get(saga_id)
        if state is None or state.status is not SagaStatus.COMPENSATED:
            problems.append(f"out-of-stock order {saga_id}: {state and state.status}; "
                            "want COMPENSATED")
    return problems


@dataclass(frozen=True)
class ProjectionAudit:
    """Invariant 4 instance by instance, from `saga checksum --by-partition --json` and
    `saga rebuild --by-partition --json`."""

    #: (instance, partition) pairs compared with the rebuild: the current copies
    compared: int
    #: older copies an instance keeps of a partition another has read further since
    stale: int
    problems: list[str]


def projection_violations(live: Mapping[str, Any], rebuilt: Mapping[str, Any]
                          ) -> ProjectionAudit:
    """Every partition's current copy, on every instance that holds one, must equal the
    rebuild. The current copies of a partition are those read furthest into the journal;
    an instance that lost the partition keeps an older copy, which it catches up from
    its stored offset should the partition come back, so it is counted, not compared."""
    copies: dict[str, list[tuple[int, str, Mapping[str, Any]]]] = {}
    for name, instance in live["instances"].items():
        for partition, row in instance["partitions"].items():
            offset = row["journal_offset"] if row["journal_offset"] is not None else -1
            copies.setdefault(partition, []).append((offset, name, row))
    problems: list[str] = []
    compared = stale = 0
    for partition in sorted(set(rebuilt["partitions"]) | set(copies), key=int):
        want = rebuilt["partitions"].get(partition, {"checksum": "", "sagas": 0})
        held = copies.get(partition, [])
        if not held:
            if want["sagas"]:
                problems.append(f"invariant 4: partition {partition} has {want['sagas']} "
                                "sagas in the journal and no instance holds them")
            continue
        newest = max(offset for offset, _, _ in held)
        for offset, name, row in held:
            if offset < newest:
                stale += 1
                continue
            compared += 1
            if (row["checksum"], row["sagas"]) != (want["checksum"], want["sagas"]):
                problems.append(
                    f"invariant 4: instance {name}, partition {partition}: {row['sagas']} "
                    f"sagas, checksum {row['checksum'][:12]}; the rebuild has "
                    f"{want['sagas']} sagas, checksum {want['checksum'][:12]}")
    return ProjectionAudit(compared, stale, problems)


def durations_ms(states: Iterable[SagaState]) -> list[int]:
    return sorted(s.ended_at_ms - s.started_at_ms for s in states if s.ended_at_ms)


def span_s(states: Iterable[SagaState]) -> float:
    """Seconds from the first saga's start to the last one's end, as the journal has it."""
    chosen = list(states)
    return (max(s.ended_at_ms for s in chosen) - min(s.started_at_ms for s in chosen)) / 1000


def percentile(values: list[int], share: float) -> int:
    if not values:
        return 0
    return values[min(len(values) - 1, int(share * len(values)))]


def replies_by_step(settings: Settings, service: str) -> dict[str, list[Any]]:
    """Per step (idempotency key) of ``service``, the result of every committed reply on
    saga.inbox, in order. A step whose effect happened twice (two executions of its
    handler) shows two different results where the handler makes a fresh id per
    execution, as the example charge does."""
    codec = RecordCodec.for_settings(settings)
    out: dict[str, list[Any]] = {}
    for _, value, _ in read_topic(settings.kafka, settings.topic("saga.inbox")):
        try:
            message = codec.decode_inbox(value)
        except CodecError:
            continue
        reply = message.value
        if isinstance(reply, CommandReply) and reply.service == service \
                and reply.outcome is ReplyOutcome.OK:
            out.setdefault(idempotency_key(reply.command_id), []).append(reply.result)
    return out
