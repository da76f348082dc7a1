"""`saga keys new ID`: a payload encryption key for SAGA_PAYLOAD_KEYS; `saga keys origin`:
an origin key for SAGA_ORIGIN_KEY; `saga keys reply-key NAME`: a service's reply key,
derived from SAGA_ORIGIN_KEY, for that service's SAGA_REPLY_KEY."""

from __future__ import annotations

import argparse
from typing import Any

from saga.cli.output import emit_json, progress
from saga.config import Settings


def register(commands: Any) -> None:
    keys = commands.add_parser("keys", help="payload encryption keys (SAGA_PAYLOAD_KEYS) "
                               "and origin keys (SAGA_ORIGIN_KEY, SAGA_REPLY_KEY)")
    sub = keys.add_subparsers(dest="action", required=True, metavar="ACTION")
    new = sub.add_parser("new", help="print a fresh 256-bit key as ID:BASE64")
    new.add_argument("key_id", metavar="ID", help="the key's id, carried by every body it "
                     "seals (e.g. 2026-12)")
    new.add_argument("--json", action="store_true")
    new.set_defaults(handler=keys_new)
    origin = sub.add_parser("origin", help="print a fresh origin key for SAGA_ORIGIN_KEY "
                            "(the coordinator's; docs/security.md)")
    origin.add_argument("--json", action="store_true")
    origin.set_defaults(handler=keys_origin)
    reply = sub.add_parser("reply-key", help="print service NAME's reply key, derived from "
                           "SAGA_ORIGIN_KEY, for that service's SAGA_REPLY_KEY")
    reply.add_argument("service", metavar="NAME", help="the service (e.g. payments)")
    reply.add_argument("--json", action="store_true")
    reply.set_defaults(handler=keys_reply)


def keys_new(args: argparse.Namespace, settings: Settings) -> int:
    from saga.codec.payload import new_key

    entry = f"{args.key_id}:{new_key()}"
    if args.json:
        emit_json({"key_id": args.key_id, "entry": entry})
    else:
        progress("prepend it to SAGA_PAYLOAD_KEYS on every process (keep the old keys "
                 f"listed), then set SAGA_PAYLOAD_KEY_ID={args.key_id}")
        print(entry)
    return 0


def keys_origin(args: argparse.Namespace, settings: Settings) -> int:
    from saga.codec.origin import new_origin_key

    key = new_origin_key()
    if args.json:
        emit_json({"origin_key": key})
    else:
        progress("give it to the coordinators only, as SAGA_ORIGIN_KEY; give each service "
                 "its own key from `saga keys reply-key NAME`")
        print(key)
    return 0


def keys_reply(args: argparse.Namespace, settings: Settings) -> int:
    from saga.codec.origin import encoded_service_key
    from saga.errors import ConfigError

    if not settings.origin_key:
        raise ConfigError("a reply key is derived from the origin key, and none is set",
                          hint="set SAGA_ORIGIN_KEY (or SAGA_ORIGIN_KEY_FILE) to the "
                          "coordinators' origin key; `saga keys origin` makes one")
    key = encoded_service_key(settings.origin_key.reveal(), args.service)
    if args.json:
        emit_json({"service": args.service, "reply_key": key})
    else:
        progress(f"give it to service {args.service} only, as SAGA_REPLY_KEY")
        print(key)
    return 0
