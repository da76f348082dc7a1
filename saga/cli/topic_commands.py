"""`saga topics create|check`: the topics of topics/topics.toml on the cluster."""

from __future__ import annotations

import argparse
import time
from typing import Any

from saga.cli.common import bootstrapped
from saga.cli.output import emit_json, progress, table
from saga.config import Settings
from saga.errors import KafkaUnavailable, TopicError
from saga.kafka.topics import admin_client, check_topics, create_topics, load_specs


def register(commands: Any) -> None:
    topics = commands.add_parser("topics", help="create or check the topics of topics/")
    sub = topics.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = sub.add_parser("create", help="create the missing topics (idempotent)")
    create.add_argument("--json", action="store_true")
    create.add_argument("--partitions", type=int, help="saga topic partitions (SAGA_PARTITIONS)")
    create.add_argument("--replication-factor", type=int, help="(SAGA_REPLICATION_FACTOR)")
    create.add_argument("--wait", type=float, default=0, metavar="SECONDS",
                        help="keep trying this long while the cluster is not ready yet")
    create.set_defaults(handler=topics_create)
    check = sub.add_parser("check", help="list every difference from the specs; exit 1 if any")
    check.add_argument("--json", action="store_true")
    check.add_argument("--partitions", type=int, help="saga topic partitions (SAGA_PARTITIONS)")
    check.add_argument("--replication-factor", type=int, help="(SAGA_REPLICATION_FACTOR)")
    check.set_defaults(handler=topics_check)


def _topic_settings(args: argparse.Namespace, settings: Settings) -> Settings:
    overrides = {k: v for k, v in (("partitions", args.partitions),
                                   ("replication_factor", args.replication_factor))
                 if v is not None}
    return settings.with_(**overrides)


def topics_create(args: argparse.Namespace, settings: Settings) -> int:
    settings = _topic_settings(args, settings)
    specs = load_specs(settings)
    deadline = time.monotonic() + args.wait
    while True:
        try:
            outcome = create_topics(admin_client(bootstrapped(settings).kafka), specs)
            break
        except (KafkaUnavailable, TopicError) as exc:  # brokers still starting
            if time.monotonic() >= deadline:
                raise
            progress(f"cluster not ready ({exc.message}); retrying")
            time.sleep(2)
    if args.json:
        emit_json(outcome)
    else:
        print(table(["topic", "partitions", "outcome"],
                    [[s.name, s.partitions, outcome[s.name]] for s in specs]))
    return 0


def topics_check(args: argparse.Namespace, settings: Settings) -> int:
    settings = _topic_settings(args, settings)
    specs = load_specs(settings)
    problems = check_topics(admin_client(bootstrapped(settings).kafka), specs)
    if args.json:
        emit_json({"ok": not problems, "problems": problems, "topics": [s.name for s in specs]})
    elif problems:
        print(f"{len(problems)} problem(s):")
        for problem in problems:
            print(f"  - {problem}")
    else:
        print(f"all {len(specs)} topics match their specs")
    return 1 if problems else 0
