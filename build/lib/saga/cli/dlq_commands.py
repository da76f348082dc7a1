"""`saga dlq list|show|redrive`: what landed in saga.dlq, why, and sending it back."""

from __future__ import annotations

import argparse
from typing import Any

from saga.audit import read_topic_records
from saga.cli.output import emit_json, table
from saga.config import Settings
from saga.errors import CodecError, ConfigError, SagaError
from saga.kafka import clients
from saga.kafka.cluster import resolve_bootstrap
from saga.kafka.messages import Messages


def register(commands: Any) -> None:
    dlq = commands.add_parser("dlq", help="dead letters: list, show, redrive")
    sub = dlq.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = sub.add_parser("list", help="every dead letter, oldest first")
    listing.add_argument("--reason", help="only this reason")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=dlq_list)
    show = sub.add_parser("show", help="one dead letter in full")
    show.add_argument("id", help="PARTITION:OFFSET, as `saga dlq list` prints it")
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=dlq_show)
    redrive = sub.add_parser("redrive", help="produce dead letters back to their source "
                             "topic (after fixing what made them fail)")
    redrive.add_argument("ids", nargs="*", help="PARTITION:OFFSET ...")
    redrive.add_argument("--reason", help="every dead letter with this reason")
    redrive.add_argument("--json", action="store_true")
    redrive.set_defaults(handler=dlq_redrive)


def _letters(settings: Settings) -> list[dict[str, Any]]:
    bootstrap = resolve_bootstrap(settings)
    messages = Messages()
    letters = []
    for record in read_topic_records(bootstrap, settings.topic("saga.dlq")):
        headers = {k: (v or b"").decode(errors="replace") for k, v in record.headers or []}
        entry: dict[str, Any] = {"id": f"{record.partition}:{record.offset}",
                                 "key": _text(record.key)}
        try:
            letter = messages.decode_dead_letter(record.value)
        except CodecError as exc:  # not written by kafka-saga: show what the headers say
            entry.update({"reason": headers.get("saga.dlq.reason", "unreadable"),
                          "detail": headers.get("saga.dlq.detail", str(exc)),
                          "component": headers.get("saga.dlq.component", "?"),
                          "source": headers.get("saga.dlq.source", "?"), "value": None,
                          "at_ms": None})
        else:
            entry.update({"reason": letter["reason"], "detail": letter["detail"],
                          "component": letter["component"],
                          "source": f"{letter['source_topic']}/{letter['source_partition']}/"
                                    f"{letter['source_offset']}",
                          "source_topic": letter["source_topic"], "at_ms": letter["at_ms"],
                          "original_key": letter["key"], "value": letter["value"]})
        letters.append(entry)
    return letters


def _text(data: bytes | None) -> str | None:
    return None if data is None else data.decode(errors="replace")


def _public(letter: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in letter.items() if k not in ("value", "original_key")}
    value = letter.get("value")
    out["value_bytes"] = None if value is None else len(value)
    out["value_preview"] = None if value is None else value[:120].decode(errors="replace")
    return out


def dlq_list(args: argparse.Namespace, settings: Settings) -> int:
    letters = [x for x in _letters(settings) if not args.reason or x["reason"] == args.reason]
    if args.json:
        emit_json([_public(x) for x in letters])
        return 0
    print(table(["id", "reason", "component", "source", "key", "detail"],
                [[x["id"], x["reason"], x["component"], x["source"], x["key"],
                  str(x["detail"])[:60]] for x in letters]))
    print(f"{len(letters)} dead letter(s)")
    return 0


def dlq_show(args: argparse.Namespace, settings: Settings) -> int:
    letter = next((x for x in _letters(settings) if x["id"] == args.id), None)
    if letter is None:
        raise SagaError(f"no dead letter {args.id}", hint="see `saga dlq list` for the ids")
    shown = _public(letter)
    if args.json:
        emit_json(shown)
    else:
        for key, value in shown.items():
            print(f"{key:14} {value}")
    return 0


def dlq_redrive(args: argparse.Namespace, settings: Settings) -> int:
    if not args.ids and not args.reason:
        raise ConfigError("say which dead letters to redrive",
                          hint="name ids (PARTITION:OFFSET) or --reason REASON")
    letters = [x for x in _letters(settings)
               if x["id"] in args.ids or (args.reason and x["reason"] == args.reason)]
    missing = set(args.ids) - {x["id"] for x in letters}
    if missing:
        raise SagaError(f"no dead letter {sorted(missing)}", hint="see `saga dlq list`")
    producer = clients.producer(resolve_bootstrap(settings))
    sent = []
    for letter in letters:
        if letter.get("source_topic") is None:
            continue
        producer.produce(letter["source_topic"], letter["value"], letter["original_key"],
                         headers=[("saga.dlq.redriven_from", letter["id"].encode())])
        sent.append(letter["id"])
    if producer.flush(30):
        raise SagaError("not every redriven record was delivered", hint="retry the command")
    if args.json:
        emit_json({"redriven": sent})
    else:
        print(f"redrove {len(sent)} dead letter(s): {', '.join(sent)}")
    return 0
