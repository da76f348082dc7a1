"""A bounded flood of malformed records on every input topic while real orders run.

`python -m bench.bad_records [--records 100000] [--orders 200]` (run by `make fuzz`):
on the embedded broker (or SAGA_BOOTSTRAP_SERVERS), a coordinator and the five example
services; ``--orders`` good order sagas, and ``--records`` bad records spread over
saga.inbox and every service's command topic: random bytes, tombstones, cut-short and
bit-flipped real records, real framing over garbage, records keyed by another saga,
bodies that are not JSON or over SAGA_MAX_PAYLOAD_BYTES, replies to commands nobody
sent, inputs for sagas that never started. It checks that no process exits, every good
saga ends as it should, and every bad record is in saga.dlq with a reason (each exactly
once, matched by its source position); it prints the figures and writes
bench/results/<UTC time>-bad-records.json."""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from saga.config import Settings
from saga.dev.embedded import EmbeddedKafka
from saga.dev.stack import SERVICE_NAMES, Stack
from saga.engine import events as ev
from saga.engine.inputs import CommandReply, DeliverSignal, ReplyOutcome, StartSaga
from saga.engine.lifecycle import SagaStatus
from saga.kafka import clients, headers
from saga.kafka.records import RecordCodec
from saga.kafka.topics import admin_client, create_topics, load_specs

RESULTS = Path(__file__).resolve().parent / "results"
STOCK = {"sku-1": 10**9, "sku-rare": 0}


def say(message: str) -> None:
    print(f"[bad-records] {message}", file=sys.stderr, flush=True)


def _order(saga_id: str, sku: str) -> dict[str, Any]:
    return {"id": saga_id, "customer": "c-1", "amount_cents": 1000,
            "items": [{"sku": sku, "qty": 1}]}


class BadRecords:
    """Makes malformed records of every kind, reproducibly (a fixed seed)."""

    def __init__(self, settings: Settings, seed: int = 14) -> None:
        self.rng = random.Random(seed)
        self.codec = RecordCodec.for_settings(settings)
        self.limit = settings.max_payload_bytes
        command = ev.CommandIssued(1, "x:1", "payments", "charge", ev.CommandKind.ACTION, 1,
                                   {"amount_cents": 1})
        self.real_inbox = self.codec.encode_inbox("x", StartSaga("order", _order("x",
                                                                                 "sku-1")))
        self.real_command = self.codec.encode_command("x", "order", command,
                                                      settings.topic("saga.inbox"), 1)

    def inbox(self) -> tuple[str, bytes | None, str]:
        """(key, value, kind) of one bad inbox record."""
        rng = self.rng
        saga_id = f"bad-{uuid.UUID(int=rng.getrandbits(128)).hex[:12]}"
        kind = rng.choice(["random", "tombstone", "cut", "flip", "framed-garbage",
                           "other-key", "not-json", "unknown-saga", "unknown-reply",
                           "unknown-type", "oversize"])
        value: bytes | None
        if kind == "random":
            value = rng.randbytes(rng.randint(0, 300))
        elif kind == "tombstone":
            value = None
        elif kind == "cut":
            value = self.real_inbox[:rng.randint(0, len(self.real_inbox) - 1)]
        elif kind == "flip":
            data = bytearray(self.real_inbox)
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            value = bytes(data)
        elif kind == "framed-garbage":
            value = self.real_inbox[:10] + rng.randbytes(rng.randint(1, 200))
        elif kind == "other-key":  # a real start for saga "x", keyed by another saga
            value = self.real_inbox
        elif kind == "not-json":
            value = self.real_inbox.replace(b'"customer"', b'"customer\xff')
        elif kind == "unknown-saga":
            value = self.codec.encode_inbox(saga_id, DeliverSignal("go", None))
        elif kind == "unknown-reply":
            value = self.codec.encode_inbox(saga_id, CommandReply(
                f"{saga_id}:9", "payments", ReplyOutcome.OK, None, ""))
        elif kind == "unknown-type":
            value = self.codec.encode_inbox(saga_id, StartSaga("no-such-workflow", {}))
        else:  # just over the limit: one in a thousand, to keep the run bounded
            value = self.codec.encode_inbox(saga_id, StartSaga("order", {"pad": "x" * 10}))
            value = value + b"x" * (self.limit + 1)
        return saga_id, value, kind

    def command(self) -> tuple[str, bytes | None, str]:
        rng = self.rng
        key = f"bad-{rng.getrandbits(48):012x}"
        kind = rng.choice(["random", "tombstone", "cut", "flip", "framed-garbage"])
        if kind == "random":
            return key, rng.randbytes(rng.randint(0, 300)), kind
        if kind == "tombstone":
            return key, None, kind
        if kind == "cut":
            return key, self.real_command[:rng.randint(0, len(self.real_command) - 1)], kind
        if kind == "flip":
            data = bytearray(self.real_command)
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            return key, bytes(data), kind
        return key, self.real_command[:10] + rng.randbytes(rng.randint(1, 200)), kind


def run(settings: Settings, records: int, orders: int) -> dict[str, Any]:
    create_topics(admin_client(settings.kafka), load_specs(settings))
    stack = Stack(settings, stock=STOCK)
    stack.start_all(["c1"])
    good = [f"good-{n:05d}" for n in range(orders)]
    maker = BadRecords(settings)
    queue: dict[str, Any] = {"queue.buffering.max.messages": 200_000}
    producer = clients.producer(settings.kafka, **queue)
    sent: dict[tuple[str, int, int], str] = {}  # (topic, partition, offset) -> kind

    def delivered(kind: str) -> Any:
        def note(error: Any, message: Any) -> None:
            if error is None:
                sent[clients.where(message)] = kind
        return note

    inbox = settings.topic("saga.inbox")
    commands = [settings.topic(f"{name}.commands") for name in SERVICE_NAMES]
    began = time.monotonic()
    try:
        time.sleep(3)  # the services join their groups
        say(f"{orders} good orders and {records:,} bad records")
        bad_sent = 0
        for n, saga_id in enumerate(good):
            stack.send(saga_id, StartSaga("order", _order(saga_id, "sku-rare" if n % 10 == 0
                                                          else "sku-1")))
            stack.send(saga_id, DeliverSignal("warehouse_picked", None))
        stack.flush()
        while bad_sent < records:
            if maker.rng.random() < 0.6:
                key, value, kind = maker.inbox()
                if kind == "oversize" and maker.rng.random() > 0.01:
                    continue
                topic = inbox
            else:
                key, value, kind = maker.command()
                topic = maker.rng.choice(commands)
            producer.produce(topic, value, key=key.encode(), on_delivery=delivered(kind))
            bad_sent += 1
            if bad_sent % 5000 == 0:
                producer.poll(0)
                producer.flush(60)
                say(f"  {bad_sent:,} bad records sent")
        producer.flush(120)
        sent_s = time.monotonic() - began
        states = stack.wait_until(lambda s: all(i in s and s[i].terminal for i in good), 600)
        letters = _wait_for_letters(settings, sent, 600)
        handled_s = time.monotonic() - began
    finally:
        stack.stop_all()
    dead = stack.dead()
    statuses = Counter(_status(states[i].status) if i in states else "missing" for i in good)
    expected = Counter(SagaStatus.COMPENSATED.value if n % 10 == 0 else
                       SagaStatus.COMPLETED.value for n in range(orders))
    twice = [where for where, count in letters.items() if count > 1 and where in sent]
    missing_inbox = [w for w in sent if w not in letters and w[0] == inbox]
    # A bit flipped in a command's body or attempt leaves a valid command (a service
    # cannot tell): it is run, and its reply, for saga "x" that never started, is
    # dead-lettered by the coordinator: a letter from an inbox record this run did not
    # send. Those count as handled.
    missing_commands = [w for w in sent if w not in letters and w[0] != inbox]
    answered = _replies_dead_lettered(settings, sent, inbox)
    reasons = _reasons(settings, sent)
    ok = (not dead and statuses == expected and not missing_inbox and not twice
          and len(missing_commands) == answered)
    return {
        "records": records, "orders": orders, "process_exits": dead,
        "good_sagas": dict(statuses), "good_sagas_expected": dict(expected),
        "bad_records_acknowledged_by_kafka": len(sent),
        "bad_records_dead_lettered_at_source": len(sent) - len(missing_inbox)
        - len(missing_commands),
        "inbox_records_missing_from_dlq": len(missing_inbox),
        "command_records_run_as_valid_and_their_reply_dead_lettered": answered,
        "command_records_unaccounted": len(missing_commands) - answered,
        "dead_lettered_twice": len(twice), "kinds_sent": dict(Counter(sent.values())),
        "dlq_reasons": reasons, "seconds_to_send": round(sent_s, 1),
        "seconds_until_all_handled": round(handled_s, 1),
        "ok": ok,
    }


def _status(status: SagaStatus | None) -> str:
    return status.value if status is not None else "none"


def _letter_sources(settings: Settings) -> list[tuple[tuple[str, int, int], str, str]]:
    out = []
    for record in clients.read_records(settings.kafka, settings.topic("saga.dlq")):
        found = headers.as_text(record.headers)
        # topic/partition/offset of the original record
        topic_part, _, offset = found.get(headers.DLQ_SOURCE, "").rpartition("/")
        topic, _, partition = topic_part.rpartition("/")
        source = (topic, int(partition or -1), int(offset or -1))
        key = (record.key or b"").decode(errors="replace")
        out.append((source, found.get(headers.DLQ_REASON, "?"), key))
    return out


def _wait_for_letters(settings: Settings, sent: dict[tuple[str, int, int], str],
                      timeout_s: float) -> Counter[tuple[str, int, int]]:
    deadline = time.monotonic() + timeout_s
    while True:
        found = _letter_sources(settings)
        letters = Counter(source for source, _, _ in found)
        have = sum(1 for where in sent if where in letters) + sum(
            1 for source, _, _ in found if source[0] == settings.topic("saga.inbox")
            and source not in sent)
        say(f"  {have:,} of {len(sent):,} bad records in saga.dlq")
        if have >= len(sent) or time.monotonic() >= deadline:
            return letters
        time.sleep(5)


def _replies_dead_lettered(settings: Settings, sent: dict[tuple[str, int, int], str],
                           inbox: str) -> int:
    """Replies to valid-looking bad commands, dead-lettered by the coordinator; not the
    failure replies a service sends for a command it dead-letters itself (an envelope
    it could read around a body it could not)."""
    codec = RecordCodec.for_settings(settings)
    count = 0
    for record in clients.read_records(settings.kafka, settings.topic("saga.dlq")):
        found = headers.as_text(record.headers)
        topic_part, _, offset = found.get(headers.DLQ_SOURCE, "").rpartition("/")
        topic, _, partition = topic_part.rpartition("/")
        if topic != inbox or (topic, int(partition), int(offset)) in sent:
            continue
        original = codec.decode_dead_letter(record.value)["value"]
        reply = codec.decode_inbox(original).value
        if isinstance(reply, CommandReply) and not reply.error.startswith(
                "undecodable_command"):
            count += 1
    return count


def _reasons(settings: Settings, sent: dict[tuple[str, int, int], str]) -> dict[str, int]:
    return dict(Counter(f"{'inbox' if 'inbox' in s[0] else 'commands'}: {reason}"
                        for s, reason, _ in _letter_sources(settings) if s in sent))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.bad_records", description=__doc__)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--orders", type=int, default=200)
    args = parser.parse_args(argv)
    base = Settings.from_env()
    if not base.bootstrap_servers:
        state = EmbeddedKafka(base.state_dir, base_port=base.kafka_port, progress=say).start(1)
        base = base.with_(bootstrap_servers=state.bootstrap_servers)
    settings = base.with_(topic_prefix=f"bad-{uuid.uuid4().hex[:6]}.",
                          state_dir=Path(tempfile.mkdtemp(prefix="saga-bad-records-")))
    result = run(settings, args.records, args.orders)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{stamp}-bad-records.json"
    path.write_text(json.dumps({"command": " ".join(["python -m bench.bad_records",
                                                     *(argv or sys.argv[1:])]),
                                "at": stamp, **result}, indent=2))
    say(json.dumps(result, indent=2))
    say(f"written to {path}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
