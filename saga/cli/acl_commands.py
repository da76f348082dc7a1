"""`saga acl show|apply|user`: the least-privilege ACLs of each role, and the SCRAM
credential of a role's principal (saga.kafka.acls)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from saga.cli.common import bootstrapped
from saga.cli.output import emit_json, progress, table
from saga.config import Settings
from saga.errors import ConfigError
from saga.kafka import acls
from saga.kafka.clients import while_kafka_recovers
from saga.kafka.topics import admin_client, service_names

#: How long `acl apply` and `acl user` ride out a cluster that answers with transient
#: errors (both are idempotent): a request can be lost with the bootstrap connection
#: librdkafka replaces by the broker it named ("Broker handle destroyed"), seen in CI.
_WAIT_S = 60


def register(commands: Any) -> None:
    acl = commands.add_parser("acl", help="the ACLs each role needs on a secured cluster")
    sub = acl.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, handler, text in (("show", acl_show, "print the ACLs of a role"),
                                ("apply", acl_apply, "create them (idempotent)")):
        parser = sub.add_parser(name, help=text)
        parser.add_argument("--role", required=True, choices=[r.value for r in acls.Role])
        parser.add_argument("--principal", required=True, metavar="User:NAME",
                            help="the principal the role's processes authenticate as")
        parser.add_argument("--service", help="the service a service principal runs")
        parser.add_argument("--json", action="store_true")
        parser.set_defaults(handler=handler)
    user = sub.add_parser("user", help="create or replace a user's SCRAM credential")
    user.add_argument("name", help="the user, e.g. coordinator or service-payments")
    user.add_argument("--password-file", required=True, type=Path,
                      help="a file holding the password (never given on the command line)")
    user.add_argument("--mechanism", choices=("SCRAM-SHA-512", "SCRAM-SHA-256"),
                      default="SCRAM-SHA-512")
    user.add_argument("--json", action="store_true")
    user.set_defaults(handler=acl_user)


def _rows(args: argparse.Namespace, settings: Settings) -> tuple[list[acls.Grant], list[
        dict[str, str]]]:
    grants = acls.grants(settings, acls.Role(args.role), service_names(), args.service)
    rows = [{"resource": g.resource.name.lower(), "name": g.name,
             "pattern": g.pattern.name.lower(), "operation": op.name.lower()}
            for g in grants for op in g.operations]
    return grants, rows


def acl_show(args: argparse.Namespace, settings: Settings) -> int:
    _, rows = _rows(args, settings)
    if args.json:
        emit_json({"principal": args.principal, "role": args.role, "acls": rows})
    else:
        print(table(["resource", "name", "pattern", "operation"],
                    [list(r.values()) for r in rows]))
    return 0


def acl_apply(args: argparse.Namespace, settings: Settings) -> int:
    grants, rows = _rows(args, settings)
    admin = admin_client(bootstrapped(settings).kafka)
    created = while_kafka_recovers(lambda: acls.apply(admin, args.principal, grants),
                                   "creating the ACLs", wait_s=_WAIT_S, say=progress)
    if args.json:
        emit_json({"principal": args.principal, "role": args.role, "applied": created,
                   "acls": rows})
    else:
        progress(f"{created} ACLs allow {args.principal} what the {args.role} role needs")
    return 0


def acl_user(args: argparse.Namespace, settings: Settings) -> int:
    try:
        password = args.password_file.read_text().rstrip("\r\n")
    except OSError as exc:
        raise ConfigError(f"cannot read {args.password_file}: {exc.strerror}",
                          hint="write the user's password into that file first") from None
    admin = admin_client(bootstrapped(settings).kafka)
    while_kafka_recovers(
        lambda: acls.set_scram_credential(admin, args.name, password, args.mechanism),
        f"setting the credential of {args.name}", wait_s=_WAIT_S, say=progress)
    if args.json:
        emit_json({"user": args.name, "mechanism": args.mechanism, "set": True})
    else:
        progress(f"user {args.name}: {args.mechanism} credential set")
    return 0
