"""`saga start|signal|cancel|resume|abandon`: inputs for a saga, produced to saga.inbox,
or sent through the visibility server's API when SAGA_API_URL (or --api) names one."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

import orjson

from saga.cli.common import blocking_client, bootstrapped, http_api, json_arg
from saga.cli.output import emit_json
from saga.config import Settings
from saga.engine.inputs import (
    AbandonSaga,
    CancelSaga,
    DeliverSignal,
    Input,
    ResumeSaga,
    StartSaga,
)
from saga.engine.lifecycle import SagaStatus
from saga.errors import ConfigError
from saga.kafka.inbox import InboxProducer, check_saga_id
from saga.store.visibility import parse_attributes
from saga.telemetry import tracing

if TYPE_CHECKING:
    from saga.client.client import Bulk


def register(commands: Any) -> None:
    start = commands.add_parser("start", help="start a saga")
    start.add_argument("type")
    start.add_argument("--id", required=True, dest="saga_id")
    start.add_argument("--input", default="null", help="the saga's input, JSON")
    start.set_defaults(handler=saga_start)
    sig = commands.add_parser("signal", help="send a signal to a saga: signal ID NAME, or "
                              "signal NAME --status/--type/... to every saga they select")
    sig.add_argument("targets", nargs="+", metavar="ID NAME", help="the saga and the signal "
                     "(only the signal with a filter)")
    sig.add_argument("--payload", default="{}", help="JSON (default {})")
    _filters(sig)
    sig.set_defaults(handler=saga_signal)
    cancel = commands.add_parser("cancel", help="cancel a saga (or every saga the filters "
                                 "select); what it did is compensated")
    cancel.add_argument("saga_id", nargs="?")
    cancel.add_argument("--reason", default="cancelled by operator")
    _filters(cancel)
    cancel.set_defaults(handler=saga_cancel)
    resume = commands.add_parser("resume", help="replay a PARKED saga (or every saga the "
                                 "filters select) with the code now deployed")
    resume.add_argument("saga_id", nargs="?")
    resume.add_argument("--reason", default="resumed by operator")
    _filters(resume)
    resume.set_defaults(handler=saga_resume)
    update = commands.add_parser("update", help="ask a running saga to compute a value (its "
                                 "ctx.on_update handler) and print it")
    update.add_argument("saga_id")
    update.add_argument("name")
    update.add_argument("--payload", default="null", help="JSON")
    update.add_argument("--timeout", type=float, default=30.0)
    update.add_argument("--update-id", help="yours, so sending it again applies it once")
    update.add_argument("--json", action="store_true")
    update.set_defaults(handler=saga_update)
    abandon = commands.add_parser("abandon", help="end a saga FAILED (a PARKED one that "
                                  "cannot be fixed); --compensate undoes what it did first")
    abandon.add_argument("saga_id")
    abandon.add_argument("--compensate", action="store_true",
                         help="run its compensations, newest first, before it ends")
    abandon.add_argument("--reason", default="abandoned by operator")
    abandon.set_defaults(handler=saga_abandon)


def _filters(command: Any) -> None:
    group = command.add_argument_group("bulk: every saga these select (instead of an id)")
    group.add_argument("--status", type=str.upper, choices=[s.value for s in SagaStatus])
    group.add_argument("--type", dest="saga_type")
    group.add_argument("--version", type=int)
    group.add_argument("--id-prefix")
    group.add_argument("--attribute", action="append", metavar="KEY=VALUE",
                       help="repeatable; VALUE is read as JSON when it is (3, true)")
    group.add_argument("--dry-run", action="store_true",
                       help="print what it would touch; send nothing")
    group.add_argument("--json", action="store_true")


def _selection(args: argparse.Namespace) -> dict[str, Any] | None:
    chosen = {"status": args.status, "type": args.saga_type, "version": args.version,
              "id_prefix": args.id_prefix, "attributes": parse_attributes(args.attribute)}
    return {k: v for k, v in chosen.items() if v is not None} or None


def _bulk(settings: Settings, args: argparse.Namespace, action: Bulk, **options: Any) -> int:
    selection = _selection(args)
    if selection is None:
        raise ConfigError("name a saga, or select sagas with --status, --type, --version, "
                          "--id-prefix or --attribute",
                          hint="add --dry-run to see what a selection takes")
    with blocking_client(settings) as client:
        ids = client.bulk(action, dry_run=args.dry_run, **options, **selection)
    if args.json:
        emit_json({"action": action, "dry_run": args.dry_run, "sagas": ids})
    else:
        verb = "would " + action if args.dry_run else action + ("ed" if action != "signal"
                                                               else "led")
        print(f"{verb} {len(ids)} saga(s)" + (f": {', '.join(ids[:20])}" if ids else "")
              + (" ..." if len(ids) > 20 else ""))
    return 0


def _send(settings: Settings, saga_id: str, value: Input) -> None:
    check_saga_id(saga_id)
    tracing.configure("saga-cli")
    if settings.api_url:
        http_api(settings).send(saga_id, value)
        return
    inbox = InboxProducer(bootstrapped(settings))
    inbox.send(saga_id, value)
    inbox.flush(30)


def saga_start(args: argparse.Namespace, settings: Settings) -> int:
    saga_input = json_arg(args.input, "--input")
    if settings.api_url:
        check_saga_id(args.saga_id)
        created = http_api(settings).start(args.type, args.saga_id, saga_input, 10)
        print(f"started {args.type} {args.saga_id}" if created or created is None
              else f"{args.saga_id} was there already; nothing started")
        return 0
    _send(settings, args.saga_id, StartSaga(args.type, saga_input))
    print(f"started {args.type} {args.saga_id}")
    return 0


def saga_signal(args: argparse.Namespace, settings: Settings) -> int:
    payload = json_arg(args.payload, "--payload")
    if _selection(args) is not None:
        if len(args.targets) != 1:
            raise ConfigError("with a selection, name only the signal",
                              hint="saga signal NAME --status WAITING")
        return _bulk(settings, args, "signal", name=args.targets[0], payload=payload)
    if len(args.targets) != 2:
        raise ConfigError("saga signal takes the saga's id and the signal's name",
                          hint="saga signal o-1 warehouse_picked")
    saga_id, name = args.targets
    _send(settings, saga_id, DeliverSignal(name, payload))
    print(f"signalled {name} to {saga_id}")
    return 0


def saga_cancel(args: argparse.Namespace, settings: Settings) -> int:
    if args.saga_id is None:
        return _bulk(settings, args, "cancel", reason=args.reason)
    _send(settings, args.saga_id, CancelSaga(args.reason))
    print(f"asked {args.saga_id} to cancel")
    return 0


def saga_resume(args: argparse.Namespace, settings: Settings) -> int:
    if args.saga_id is None:
        return _bulk(settings, args, "resume", reason=args.reason)
    _send(settings, args.saga_id, ResumeSaga(args.reason))
    print(f"asked {args.saga_id} to resume (see `saga status {args.saga_id}`)")
    return 0


def saga_update(args: argparse.Namespace, settings: Settings) -> int:
    with blocking_client(settings) as client:
        result = client.update(args.saga_id, args.name, json_arg(args.payload, "--payload"),
                               timeout=args.timeout, update_id=args.update_id)
    if args.json:
        emit_json({"saga_id": args.saga_id, "update": args.name, "result": result})
    else:
        print(orjson.dumps(result).decode())
    return 0


def saga_abandon(args: argparse.Namespace, settings: Settings) -> int:
    _send(settings, args.saga_id, AbandonSaga(args.reason, args.compensate))
    what = "compensate, then end FAILED" if args.compensate else "end FAILED"
    print(f"asked {args.saga_id} to {what}")
    return 0
