"""`saga keys new ID`: a payload encryption key for SAGA_PAYLOAD_KEYS."""

from __future__ import annotations

import argparse
from typing import Any

from saga.cli.output import emit_json, progress
from saga.config import Settings


def register(commands: Any) -> None:
    keys = commands.add_parser("keys", help="payload encryption keys (SAGA_PAYLOAD_KEYS)")
    sub = keys.add_subparsers(dest="action", required=True, metavar="ACTION")
    new = sub.add_parser("new", help="print a fresh 256-bit key as ID:BASE64")
    new.add_argument("key_id", metavar="ID", help="the key's id, carried by every body it "
                     "seals (e.g. 2026-12)")
    new.add_argument("--json", action="store_true")
    new.set_defaults(handler=keys_new)


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
