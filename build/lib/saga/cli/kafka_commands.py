"""`saga kafka ...` (the embedded broker) and `saga topics ...`."""

from __future__ import annotations

import argparse
import time
from typing import Any

from saga.cli.output import emit_json, progress, table
from saga.config import Settings
from saga.errors import KafkaUnavailable, TopicError
from saga.kafka.cluster import resolve_bootstrap
from saga.kafka.embedded import EmbeddedKafka
from saga.kafka.topics import admin_client, check_topics, create_topics, load_specs


def register(commands: Any) -> None:
    kafka = commands.add_parser("kafka", help="the embedded Kafka broker")
    sub = kafka.add_subparsers(dest="action", required=True, metavar="ACTION")
    start = sub.add_parser("start", help="start (idempotent) and print the bootstrap servers")
    start.add_argument("--brokers", type=int, choices=(1, 3), default=1)
    start.add_argument("--port", type=int, help="first client port (env SAGA_KAFKA_PORT)")
    start.set_defaults(handler=kafka_start)
    stop = sub.add_parser("stop", help="stop every node")
    stop.set_defaults(handler=kafka_stop)
    status = sub.add_parser("status", help="is it running, where")
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=kafka_status)

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


def _embedded(args: argparse.Namespace, settings: Settings) -> EmbeddedKafka:
    port = getattr(args, "port", None) or settings.kafka_port
    return EmbeddedKafka(settings.state_dir, base_port=port, progress=progress)


def kafka_start(args: argparse.Namespace, settings: Settings) -> int:
    began = time.monotonic()
    state = _embedded(args, settings).start(args.brokers)
    progress(f"Kafka {state.version} up with {state.brokers} broker(s) "
             f"in {time.monotonic() - began:.1f}s")
    print(state.bootstrap_servers)
    return 0


def kafka_stop(args: argparse.Namespace, settings: Settings) -> int:
    stopped = _embedded(args, settings).stop()
    progress(f"stopped {len(stopped)} node(s)" if stopped else "nothing was running")
    return 0


def kafka_status(args: argparse.Namespace, settings: Settings) -> int:
    status = _embedded(args, settings).status()
    if args.json:
        emit_json(status)
    elif not status["nodes"]:
        print(f"not started (state under {status['state_dir']})")
    else:
        print(f"Kafka {status['version']}: {'running' if status['running'] else 'NOT running'}"
              f" at {status['bootstrap_servers']}")
        nodes = status["nodes"]
        assert isinstance(nodes, list)
        print(table(["node", "pid", "port", "alive", "listening"],
                    [[n["node_id"], n["pid"], n["port"], n["alive"], n["listening"]]
                     for n in nodes]))
    return 0 if status["running"] else 1


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
            outcome = create_topics(admin_client(resolve_bootstrap(settings)), specs)
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
    problems = check_topics(admin_client(resolve_bootstrap(settings)), specs)
    if args.json:
        emit_json({"ok": not problems, "problems": problems, "topics": [s.name for s in specs]})
    elif problems:
        print(f"{len(problems)} problem(s):")
        for problem in problems:
            print(f"  - {problem}")
    else:
        print(f"all {len(specs)} topics match their specs")
    return 1 if problems else 0
