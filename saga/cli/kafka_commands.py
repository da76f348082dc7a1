"""`saga kafka start|stop|status|secrets`: the embedded broker and the files of a
secured development cluster, development tools (saga.dev)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from saga.cli.output import emit_json, progress, table
from saga.config import Settings

if TYPE_CHECKING:
    from saga.dev.embedded import EmbeddedKafka


def register(commands: Any) -> None:
    kafka = commands.add_parser("kafka", help="the embedded Kafka broker")
    sub = kafka.add_subparsers(dest="action", required=True, metavar="ACTION")
    start = sub.add_parser("start", help="start (idempotent) and print the bootstrap servers")
    start.add_argument("--brokers", type=int, choices=(1, 3), default=1)
    start.add_argument("--port", type=int, help="first client port (env SAGA_KAFKA_PORT)")
    start.add_argument("--secure", action="store_true",
                       help="SASL_SSL (SCRAM) for clients, TLS among nodes, ACLs enforced; "
                       "`saga kafka status --json` says how to connect")
    start.set_defaults(handler=kafka_start)
    stop = sub.add_parser("stop", help="stop every node")
    stop.set_defaults(handler=kafka_stop)
    status = sub.add_parser("status", help="is it running, where")
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=kafka_status)
    files = sub.add_parser(
        "secrets", help="a CA, broker and admin certificates, a password per role's user, "
        "the origin key and each service's reply key, and a folder per container with "
        "only its own, for a secured development stack (compose/docker-compose.secure.yml)")
    files.add_argument("--dir", required=True, type=Path, help="where to write them")
    files.add_argument("--broker-uid", type=int, default=None,
                       help="give the brokers' folder to this user id (the official Kafka "
                       "image runs its broker as uid 1000); every file stays 0600")
    files.add_argument("--json", action="store_true")
    files.set_defaults(handler=kafka_secrets)


def _embedded(args: argparse.Namespace, settings: Settings) -> EmbeddedKafka:
    from saga.dev.embedded import EmbeddedKafka

    port = getattr(args, "port", None) or settings.kafka_port
    return EmbeddedKafka(settings.state_dir, base_port=port, progress=progress)


def kafka_start(args: argparse.Namespace, settings: Settings) -> int:
    began = time.monotonic()
    embedded = _embedded(args, settings)
    state = embedded.start(args.brokers, secure=args.secure)
    progress(f"Kafka {state.version} up with {state.brokers} "
             f"{'secured ' if state.secure else ''}broker(s) "
             f"in {time.monotonic() - began:.1f}s")
    if state.secure:
        from saga.dev.embedded import users

        progress("clients: SASL_SSL, SCRAM-SHA-512, user admin (a super user), password "
                 f"in {embedded.password_file('admin')}, CA {embedded.certificates.ca}; the "
                 "saga commands on this machine use them when SAGA_KAFKA_* names none. "
                 f"One user per role too, passwords beside: {', '.join(users())}")
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


def kafka_secrets(args: argparse.Namespace, settings: Settings) -> int:
    from saga.dev.embedded import ADMIN_USER, users
    from saga.dev.secrets import write_dev_secrets
    from saga.kafka.topics import service_names

    names = users()
    written = write_dev_secrets(args.dir, names, service_names(),
                                broker_uid=args.broker_uid)
    files = written.certificates
    paths = {"ca": str(files.ca), "broker_keystore": str(files.broker_keystore),
             "admin_cert": str(files.client_cert(ADMIN_USER)),
             "admin_key": str(files.client_key(ADMIN_USER)),
             "passwords": {u: str(written.password(u)) for u in names},
             "containers": str(written.containers)}
    if args.json:
        emit_json({**paths, "new_passwords": written.new_passwords})
    else:
        progress(f"certificates in {args.dir} (CA {files.ca.name}); passwords of "
                 f"{len(names)} users in {args.dir / 'users'} "
                 f"({len(written.new_passwords)} new); each container's own files under "
                 f"{paths['containers']}")
    return 0
