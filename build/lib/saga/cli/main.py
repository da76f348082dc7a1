"""Entry point of the `saga` command: parses flags, builds Settings, runs a command.

Exit codes: 0 success, 1 a check found problems, 2 an error (the message says what to
do next), 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from saga.cli import dlq_commands, kafka_commands, saga_commands
from saga.config import Settings
from saga.errors import SagaError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="saga", description="kafka-saga: durable workflows on Apache Kafka")
    parser.add_argument("--bootstrap-servers", help="Kafka cluster (env SAGA_BOOTSTRAP_SERVERS; "
                        "default: the embedded broker)")
    parser.add_argument("--state-dir", help="local state folder (env SAGA_STATE_DIR; "
                        "default: .saga)")
    parser.add_argument("--topic-prefix", help="prefix of every topic name "
                        "(env SAGA_TOPIC_PREFIX; default: none)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    kafka_commands.register(commands)
    saga_commands.register(commands)
    dlq_commands.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env(
            bootstrap_servers=args.bootstrap_servers, state_dir=args.state_dir,
            topic_prefix=args.topic_prefix)
        code: int = args.handler(args, settings)
        return code
    except SagaError as exc:
        print(f"saga: error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"saga: next: {exc.hint}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
