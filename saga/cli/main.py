"""Entry point of the `saga` command: parses flags, builds Settings, runs a command.

Exit codes: 0 success, 1 a check found problems, 2 an error, 130 interrupted. Every
error (Kafka's own included) prints what happened and, on a `saga: next:` line, what to
do about it; none ends in a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from confluent_kafka import KafkaException

from saga.cli import (
    acl_commands,
    dlq_commands,
    input_commands,
    kafka_commands,
    key_commands,
    process_commands,
    projection_commands,
    read_commands,
    schedule_commands,
    topic_commands,
)
from saga.config import Settings
from saga.errors import SagaError
from saga.kafka.clients import as_saga_error
from saga.telemetry.logs import configure_logging, json_lines


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="saga", description="kafka-saga: durable workflows on Apache Kafka")
    parser.add_argument("--bootstrap-servers", help="Kafka cluster (env SAGA_BOOTSTRAP_SERVERS; "
                        "default: the embedded broker)")
    parser.add_argument("--state-dir", help="local state folder (env SAGA_STATE_DIR; "
                        "default: .saga)")
    parser.add_argument("--topic-prefix", help="prefix of every topic name "
                        "(env SAGA_TOPIC_PREFIX; default: none)")
    parser.add_argument("--api", dest="api_url", help="URL of a `saga server`: status, "
                        "history, list, timers and dlq read through it (env SAGA_API_URL)")
    security = parser.add_argument_group(
        "Kafka security", "passwords only through SAGA_KAFKA_SASL_PASSWORD and "
        "SAGA_KAFKA_SSL_KEY_PASSWORD: a flag would show them to anyone running ps")
    for flag, what in (("--kafka-security-protocol", "PLAINTEXT, SSL, SASL_PLAINTEXT or "
                        "SASL_SSL"), ("--kafka-sasl-mechanism", "PLAIN, SCRAM-SHA-256 or "
                        "SCRAM-SHA-512"), ("--kafka-sasl-username", "the SASL user"),
                       ("--kafka-ssl-ca-file", "PEM of the brokers' CA"),
                       ("--kafka-ssl-cert-file", "PEM client certificate (mTLS)"),
                       ("--kafka-ssl-key-file", "PEM client key (mTLS)")):
        env = "SAGA_" + flag[2:].replace("-", "_").upper()
        security.add_argument(flag, help=f"{what} (env {env})")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in (kafka_commands, topic_commands, process_commands, input_commands,
                  read_commands, projection_commands, dlq_commands, schedule_commands,
                  acl_commands, key_commands):
        group.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging()
    try:
        settings = Settings.from_env(
            bootstrap_servers=args.bootstrap_servers, state_dir=args.state_dir,
            topic_prefix=args.topic_prefix, api_url=args.api_url,
            **{name: getattr(args, name) for name in (
                "kafka_security_protocol", "kafka_sasl_mechanism", "kafka_sasl_username",
                "kafka_ssl_ca_file", "kafka_ssl_cert_file", "kafka_ssl_key_file")})
        configure_logging(settings.log_format)
        code: int = args.handler(args, settings)
        return code
    except SagaError as exc:
        return _report(exc)
    except KafkaException as exc:
        return _report(as_saga_error(exc))
    except KeyboardInterrupt:
        return 130


def _report(error: SagaError) -> int:
    if json_lines():  # a process whose stderr is JSON lines ends with one too
        logging.getLogger("saga").error(error.message, extra={
            "hint": error.hint, "error": type(error).__name__, "retryable": error.retryable})
        return 2
    print(f"saga: error: {error.message}", file=sys.stderr)
    if error.hint:
        print(f"saga: next: {error.hint}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
