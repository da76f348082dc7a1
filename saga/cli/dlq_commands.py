"""`saga dlq list|show|redrive`: what landed in saga.dlq, why, and sending it back."""

from __future__ import annotations

import argparse
from typing import Any

from saga.cli.common import bootstrapped, http_api
from saga.cli.output import emit_json, table
from saga.config import Settings
from saga.errors import ConfigError, SagaError
from saga.kafka import clients
from saga.kafka.dead_letters import public, read_letter, redrive
from saga.kafka.records import RecordCodec


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
    redrive = sub.add_parser("redrive", help="produce dead letters back to the topic "
                             "their component reads (after fixing what made them fail); "
                             "a letter naming any other topic is refused (exit 1)")
    redrive.add_argument("ids", nargs="*", help="PARTITION:OFFSET ...")
    redrive.add_argument("--reason", help="every dead letter with this reason")
    redrive.add_argument("--json", action="store_true")
    redrive.set_defaults(handler=dlq_redrive)


def _letters(settings: Settings) -> list[dict[str, Any]]:
    kafka = bootstrapped(settings).kafka
    codec = RecordCodec.for_settings(settings)
    return [read_letter(codec, record)
            for record in clients.read_records(kafka, settings.topic("saga.dlq"))]


def _shown(settings: Settings, reason: str | None) -> list[dict[str, Any]]:
    """Letters as shown (no bytes), through the API when one is configured."""
    if settings.api_url:
        shown: list[dict[str, Any]] = http_api(settings).get("/api/dlq",
                                                                        reason=reason)
        return shown
    return [public(x) for x in _letters(settings) if not reason or x["reason"] == reason]


def dlq_list(args: argparse.Namespace, settings: Settings) -> int:
    letters = _shown(settings, args.reason)
    if args.json:
        emit_json(letters)
        return 0
    print(table(["id", "reason", "component", "source", "key", "detail"],
                [[x["id"], x["reason"], x["component"], x["source"], x["key"],
                  str(x["detail"])[:60]] for x in letters]))
    print(f"{len(letters)} dead letter(s)")
    return 0


def dlq_show(args: argparse.Namespace, settings: Settings) -> int:
    shown = next((x for x in _shown(settings, None) if x["id"] == args.id), None)
    if shown is None:
        raise SagaError(f"no dead letter {args.id}", hint="see `saga dlq list` for the ids")
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
    if settings.api_url:
        answer = http_api(settings).post("/api/dlq/redrive",
                                               {"ids": args.ids, "reason": args.reason})
        return _print_redriven(args, answer["redriven"], answer.get("refused", []))
    letters = [x for x in _letters(settings)
               if x["id"] in args.ids or (args.reason and x["reason"] == args.reason)]
    missing = set(args.ids) - {x["id"] for x in letters}
    if missing:
        raise SagaError(f"no dead letter {sorted(missing)}", hint="see `saga dlq list`")
    done = redrive(bootstrapped(settings), letters)
    return _print_redriven(args, done.sent, [r.to_json() for r in done.refused])


def _print_redriven(args: argparse.Namespace, sent: list[str],
                    refused: list[dict[str, str]]) -> int:
    """Exit 1 when a letter was refused (a forged or damaged letter is a finding)."""
    if args.json:
        emit_json({"redriven": sent, "refused": refused})
    else:
        print(f"redrove {len(sent)} dead letter(s): {', '.join(sent)}")
        if refused:
            print(f"refused {len(refused)} dead letter(s):")
            print(table(["id", "reason", "detail"],
                        [[x["id"], x["reason"], x["detail"]] for x in refused]))
    return 1 if refused else 0
