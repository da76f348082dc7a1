"""`saga schedule create|list|pause|resume|trigger|delete`: cron schedules that start
sagas, each a saga of its own (saga/engine/schedule.py)."""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING, Any

from saga.cli.common import blocking_client, json_arg
from saga.cli.output import emit_json, table
from saga.config import Settings
from saga.errors import SagaError

if TYPE_CHECKING:
    from saga.client import BlockingSagaClient


def register(commands: Any) -> None:
    schedule = commands.add_parser("schedule", help="cron schedules that start sagas")
    sub = schedule.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = sub.add_parser("create", help="a schedule (a second create of the id changes "
                            "nothing)")
    create.add_argument("schedule_id")
    create.add_argument("--cron", required=True, help="five fields (minute hour day month "
                        "weekday), or six with seconds last, e.g. '0 9 * * 1-5'")
    create.add_argument("--type", required=True, dest="saga_type", help="the saga it starts")
    create.add_argument("--input", default="null", help="that saga's input, JSON")
    create.add_argument("--timezone", default="UTC", help="IANA name (default UTC)")
    create.add_argument("--overlap", choices=["skip", "buffer", "allow"], default="skip",
                        help="a slot while the last run goes on: skip it (default), start "
                        "it after (buffer), or start it anyway (allow)")
    create.add_argument("--catchup-window", default="1m", help="after downtime, missed "
                        "slots this recent still run (e.g. 30s, 10m, 2h, 1d; default 1m)")
    create.set_defaults(handler=schedule_create)
    listing = sub.add_parser("list", help="every schedule: its spec, next slot, runs")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=schedule_list)
    for op, text in (("pause", "its slots pass without a run"), ("resume", "runs again"),
                     ("trigger", "a run now (the overlap policy applies)"),
                     ("delete", "ends the schedule")):
        command = sub.add_parser(op, help=text)
        command.add_argument("schedule_id")
        command.set_defaults(handler=schedule_control, op=op)


def duration_s(raw: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        if raw[-1:] in units:
            return float(raw[:-1]) * units[raw[-1]]
        return float(raw)
    except ValueError:
        raise SagaError(f"{raw!r} is not a duration", hint="e.g. 90s, 10m, 2h, 1d") from None


def _client(settings: Settings) -> BlockingSagaClient:
    return blocking_client(settings)


def schedule_create(args: argparse.Namespace, settings: Settings) -> int:
    with _client(settings) as client:
        created = client.create_schedule(
            args.schedule_id, cron=args.cron, saga_type=args.saga_type,
            input=json_arg(args.input, "--input"), timezone=args.timezone,
            overlap=args.overlap, catchup_window_s=duration_s(args.catchup_window))
    print(f"schedule {args.schedule_id} " + ("created" if created else "was there already"
                                             if created is False else
                                             "sent (no coordinator has started it yet)"))
    return 0


def schedule_list(args: argparse.Namespace, settings: Settings) -> int:
    with _client(settings) as client:
        found = client.schedules()
    if args.json:
        emit_json(found)
        return 0

    def when(ms: int | None) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000)) if ms else "-"

    print(table(["schedule", "cron", "zone", "starts", "overlap", "state", "runs", "next"],
                [[s["schedule_id"], s["cron"], s["timezone"], s["saga_type"], s["overlap"],
                  "paused" if s["paused"] else "active", s["runs"], when(s["next_slot_ms"])]
                 for s in found]))
    print(f"{len(found)} schedule(s)")
    return 0


def schedule_control(args: argparse.Namespace, settings: Settings) -> int:
    with _client(settings) as client:
        client.control_schedule(args.schedule_id, args.op)
    print(f"asked schedule {args.schedule_id} to {args.op}")
    return 0
