"""Typed settings with documented defaults, read from flags and ``SAGA_*`` variables.

Precedence: an explicit argument (a CLI flag) beats the environment, which beats the
default. Every field's variable is ``SAGA_`` + its upper-cased name; a secret may be
given instead as a file named by ``SAGA_<NAME>_FILE``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from saga.errors import ConfigError

if TYPE_CHECKING:
    from saga.codec.origin import OriginKeys

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


@dataclass(frozen=True)
class Secret:
    """A password or key passphrase: its repr and str never show it (settings end up in
    logs, tracebacks and test reports); ``reveal()`` is the one way to read it."""

    _value: str = field(default="", repr=False)

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('***')" if self._value else "Secret('')"

    __str__ = __repr__


@dataclass(frozen=True)
class KafkaSecurity:
    """How every Kafka client of a process authenticates and encrypts: mapped onto
    librdkafka and aiokafka in one place, saga.kafka.security."""

    protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism = ""
    sasl_username: str = ""
    sasl_password: Secret = Secret()
    #: PEM file of the CA that signed the brokers' certificates (empty: the system's).
    ssl_ca_file: str = ""
    #: PEM client certificate and key, for mTLS.
    ssl_cert_file: str = ""
    ssl_key_file: str = ""
    ssl_key_password: Secret = Secret()

    @property
    def uses_sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @property
    def uses_tls(self) -> bool:
        return self.protocol.endswith("SSL")


@dataclass(frozen=True)
class KafkaConnection:
    """What a Kafka client needs to reach the cluster: where, and how."""

    bootstrap_servers: str
    security: KafkaSecurity = KafkaSecurity()


@dataclass(frozen=True)
class Settings:
    """Everything a kafka-saga process needs to find its cluster, topics and state."""

    #: Kafka bootstrap servers; empty means the embedded broker (`saga kafka start`).
    bootstrap_servers: str = ""
    #: Where the embedded broker, projections and service stores keep their files.
    state_dir: Path = field(default_factory=lambda: Path(".saga"))
    #: Prepended to every topic name; empty in production, unique per test run.
    topic_prefix: str = ""
    #: Partitions of the co-partitioned saga topics (inbox, journal, timers).
    partitions: int = 6
    #: Replication factor of every topic; 3 on a 3-broker cluster.
    replication_factor: int = 1
    #: First client port of the embedded broker; node i listens on this + i.
    kafka_port: int = 29092
    #: Largest JSON body (saga input, command, reply, signal) accepted, in bytes.
    max_payload_bytes: int = 512 * 1024
    #: Comma-separated modules whose @workflow declarations a coordinator runs.
    workflows: str = "saga.examples.order,saga.examples.subscription,saga.examples.bulk_order"
    #: Wall time of one workflow activation before its saga parks (0: no limit).
    run_max_seconds: float = 5.0
    #: Journal entries one decision may write before its saga parks.
    run_max_events: int = 10_000
    #: Commands one decision may issue (fan-out) before its saga parks.
    run_max_commands: int = 2_000
    #: Journal entries one saga may hold before it parks.
    max_history: int = 100_000
    #: Reply deadline of a ctx.call or compensation attempt that names none, in
    #: seconds (0: none). Past it the attempt counts as failed and is retried.
    step_timeout_s: float = 300.0
    #: Signals a saga may hold that no wait has taken yet; more are dead-lettered.
    max_pending_signals: int = 1_000
    #: Longest a service handler may run before its attempt fails (0: no limit).
    handler_timeout_s: float = 60.0
    #: How long a service takes commands of one consume round before it commits what it
    #: handled and polls again (the rest is read again next round). With the handler
    #: timeout it bounds the time between polls, and so how long a rebalance waits.
    service_round_budget_s: float = 10.0
    #: The visibility server's HTTP API (e.g. http://127.0.0.1:8090): the CLI's read
    #: commands and the client go through it when set.
    api_url: str = ""
    #: Processes `saga rebuild` folds the journal in, and a coordinator the partitions
    #: its projection has never read (a new instance, a wiped store), each a share of
    #: the partitions (0: one per CPU core once there are 50,000 records; 1: in-process).
    rebuild_workers: int = 0
    #: Where `saga server` listens: loopback unless told otherwise.
    server_host: str = "127.0.0.1"
    server_port: int = 8090
    #: Host names `saga server` answers to, comma-separated (empty: localhost,
    #: 127.0.0.1, ::1 and SAGA_SERVER_HOST; ``*``: any, which lets a DNS rebinding page
    #: reach it). A browser's Origin must name one of them too.
    server_allowed_hosts: str = ""
    #: Requests that wait (long polls: ``?wait=``, updates) `saga server` holds at once;
    #: more are answered 503 at once.
    server_max_waiting: int = 256
    #: Threads that run `saga server`'s index scans (listings, histories, dead letters,
    #: timers, stats); more scans queue. A scan is Python work that holds the GIL: more
    #: threads scan no faster and make every other request wait longer for it.
    server_scan_threads: int = 1
    #: Index rows one request may read (a listing's filter, dead letters, overdue
    #: timers); past it the page ends early, with a cursor to go on from.
    server_scan_limit: int = 10_000
    #: Port of a coordinator's or service's Prometheus /metrics (0: not served; the
    #: server serves /metrics beside its API).
    metrics_port: int = 0
    #: Address it listens on.
    metrics_host: str = "127.0.0.1"
    #: "text" (a line a message) or "json" (one JSON object a line, with the saga id,
    #: partition and instance where they apply).
    log_format: str = "text"
    #: Allocations between the cyclic garbage collector's young collections in the
    #: long-running processes (coordinator, services, server), whose start-up objects are
    #: also frozen out of its scans. Python's 700 cost the coordinator 7-9% of its CPU,
    #: mostly in full scans of its caches (docs/benchmarks.md); 0 keeps Python's own.
    gc_young_threshold: int = 20_000
    #: Bearer tokens `saga server` accepts for reading (comma-separated; none: the API is
    #: open). Never printed.
    api_read_tokens: Secret = field(default_factory=Secret)
    #: Tokens that may also act (start, signal, cancel, resume, abandon, update, redrive).
    api_operate_tokens: Secret = field(default_factory=Secret)
    #: The token the client and the CLI send to SAGA_API_URL.
    api_token: Secret = field(default_factory=Secret)
    #: Payload encryption keys, ``id:base64key,...`` (none: bodies are plain JSON).
    #: Every process that reads or writes bodies needs them. Never printed.
    payload_keys: Secret = field(default_factory=Secret)
    #: The key new bodies are sealed with (default: the first listed).
    payload_key_id: str = ""
    #: Read plain bodies and first-format (SGE1) seals although payload keys are set:
    #: only while an installation moves to encryption or from SGE1; with it off (the
    #: default) a body without a bound seal is refused as tampered.
    payload_accept_legacy: bool = False
    #: The origin key (base64, 32 bytes; `saga keys origin`), for the coordinator only:
    #: with it, a reply must carry its service's tag and a fired timer or a child's
    #: start or end the coordinator's, or it is dead-lettered (docs/security.md). Empty:
    #: nothing is checked. Never printed.
    origin_key: Secret = field(default_factory=Secret)
    #: A service's own reply key, derived from the origin key (`saga keys reply-key
    #: NAME`): it tags the service's replies. Never printed.
    reply_key: Secret = field(default_factory=Secret)
    #: Claim-check: a directory every process shares (a volume, NFS) where bodies larger
    #: than SAGA_CLAIM_CHECK_BYTES are kept, the record carrying only their SHA-256
    #: (empty: every body travels in its record). Blobs are never deleted by kafka-saga.
    claim_check_dir: str = ""
    #: Bodies (after encryption) above this many bytes go to SAGA_CLAIM_CHECK_DIR.
    claim_check_bytes: int = 64 * 1024
    #: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL, for every Kafka client of the process.
    kafka_security_protocol: str = "PLAINTEXT"
    #: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 with a SASL_* protocol.
    kafka_sasl_mechanism: str = ""
    kafka_sasl_username: str = ""
    #: Never printed: shown as *** in reprs, logs, --json output and errors.
    kafka_sasl_password: Secret = field(default_factory=Secret)
    #: PEM file of the CA that signed the brokers' certificates (empty: the system's).
    kafka_ssl_ca_file: str = ""
    #: PEM client certificate and private key, for mTLS (SSL) brokers.
    kafka_ssl_cert_file: str = ""
    kafka_ssl_key_file: str = ""
    kafka_ssl_key_password: Secret = field(default_factory=Secret)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from ``SAGA_*`` variables, then ``overrides`` that are not None."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f"SAGA_{f.name.upper()}")
            if (raw is None or raw == "") and f.type == "Secret":
                raw = _secret_file(f.name, env.get(f"SAGA_{f.name.upper()}_FILE"))
            if raw is None or raw == "":
                continue
            values[f.name] = _parse(f.name, f.type, raw)
        types = {f.name: f.type for f in fields(cls)}
        # Flags arrive as text, like the variables: the same parsing, the same errors.
        values.update({k: _parse(k, types[k], v) if isinstance(v, str) and k in types else v
                       for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        settings.validate()
        return settings

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    def with_security(self, security: KafkaSecurity) -> Settings:
        """These settings reaching Kafka as ``security`` says."""
        return replace(
            self, kafka_security_protocol=security.protocol,
            kafka_sasl_mechanism=security.sasl_mechanism,
            kafka_sasl_username=security.sasl_username,
            kafka_sasl_password=security.sasl_password,
            kafka_ssl_ca_file=security.ssl_ca_file, kafka_ssl_cert_file=security.ssl_cert_file,
            kafka_ssl_key_file=security.ssl_key_file,
            kafka_ssl_key_password=security.ssl_key_password)

    def validate(self) -> None:
        if self.service_round_budget_s <= 0:
            raise ConfigError(
                f"service_round_budget_s must be > 0, got {self.service_round_budget_s}",
                hint="set SAGA_SERVICE_ROUND_BUDGET_S to a number of seconds (default 10)")
        if self.gc_young_threshold < 0:
            raise ConfigError(
                f"gc_young_threshold must be >= 0, got {self.gc_young_threshold}",
                hint="set SAGA_GC_YOUNG_THRESHOLD to a number of allocations (default "
                "20000), or 0 for Python's own")
        if self.rebuild_workers < 0:
            raise ConfigError(f"rebuild_workers must be >= 0, got {self.rebuild_workers}",
                              hint="set SAGA_REBUILD_WORKERS to 0 (one per CPU core) or a "
                              "number of processes")
        if self.partitions < 1:
            raise ConfigError(f"partitions must be >= 1, got {self.partitions}",
                              hint="set SAGA_PARTITIONS to a positive integer")
        if self.replication_factor < 1:
            raise ConfigError(
                f"replication_factor must be >= 1, got {self.replication_factor}",
                hint="set SAGA_REPLICATION_FACTOR to 1 (single broker) or 3",
            )

        self.kafka.security  # noqa: B018 - validates the security settings
        if self.payload_keys or self.payload_key_id:
            from saga.codec.payload import PayloadCipher  # cryptography: only when used

            PayloadCipher.parse(self.payload_keys.reveal(), self.payload_key_id)
        if self.origin_key or self.reply_key:
            self.origin_keys()
        if self.claim_check_dir and self.claim_check_bytes < 1:
            raise ConfigError(
                f"claim_check_bytes must be >= 1, got {self.claim_check_bytes}",
                hint="set SAGA_CLAIM_CHECK_BYTES to the body size above which bodies go "
                "to SAGA_CLAIM_CHECK_DIR")
        for name, least in (("server_max_waiting", 1), ("server_scan_threads", 1),
                            ("server_scan_limit", 100)):
            if getattr(self, name) < least:
                raise ConfigError(f"{name} must be >= {least}, got {getattr(self, name)}",
                                  hint=f"set SAGA_{name.upper()} (docs/configuration.md)")
        if self.log_format not in ("text", "json"):
            raise ConfigError(f"log_format must be text or json, got {self.log_format!r}",
                              hint="set SAGA_LOG_FORMAT=json or leave it unset")

    @property
    def kafka(self) -> KafkaConnection:
        """The cluster and how to reach it, for saga.kafka's clients."""
        protocol = self.kafka_security_protocol.upper()
        if protocol not in get_args(SecurityProtocol):
            raise ConfigError(
                f"kafka_security_protocol must be one of {', '.join(get_args(SecurityProtocol))}"
                f", got {self.kafka_security_protocol!r}",
                hint="set SAGA_KAFKA_SECURITY_PROTOCOL, e.g. SASL_SSL")
        mechanism = self.kafka_sasl_mechanism.upper()
        if mechanism not in get_args(SaslMechanism):
            raise ConfigError(
                f"kafka_sasl_mechanism must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, got "
                f"{self.kafka_sasl_mechanism!r}", hint="set SAGA_KAFKA_SASL_MECHANISM")
        security = KafkaSecurity(
            protocol=protocol, sasl_mechanism=mechanism,  # type: ignore[arg-type]
            sasl_username=self.kafka_sasl_username, sasl_password=self.kafka_sasl_password,
            ssl_ca_file=self.kafka_ssl_ca_file, ssl_cert_file=self.kafka_ssl_cert_file,
            ssl_key_file=self.kafka_ssl_key_file,
            ssl_key_password=self.kafka_ssl_key_password)
        if security.uses_sasl and not (mechanism and security.sasl_username
                                       and security.sasl_password):
            raise ConfigError(
                f"{protocol} needs a SASL mechanism, user name and password",
                hint="set SAGA_KAFKA_SASL_MECHANISM (e.g. SCRAM-SHA-512), "
                "SAGA_KAFKA_SASL_USERNAME and SAGA_KAFKA_SASL_PASSWORD")
        if not security.uses_sasl and mechanism:
            raise ConfigError(
                f"a SASL mechanism is set but the protocol is {protocol}",
                hint="set SAGA_KAFKA_SECURITY_PROTOCOL=SASL_SSL (or SASL_PLAINTEXT)")
        if bool(security.ssl_cert_file) != bool(security.ssl_key_file):
            raise ConfigError("mTLS needs both a client certificate and its key",
                              hint="set SAGA_KAFKA_SSL_CERT_FILE and SAGA_KAFKA_SSL_KEY_FILE")
        if security.ssl_cert_file and not security.uses_tls:
            raise ConfigError(f"a client certificate is set but the protocol is {protocol}",
                              hint="set SAGA_KAFKA_SECURITY_PROTOCOL=SSL or SASL_SSL")
        for name in ("ssl_ca_file", "ssl_cert_file", "ssl_key_file"):
            path = getattr(security, name)
            if path and not Path(path).is_file():
                raise ConfigError(f"kafka_{name} {path!r} is not a readable file",
                                  hint=f"set SAGA_KAFKA_{name.upper()} to a PEM file")
        return KafkaConnection(self.bootstrap_servers, security)

    def child_env(self) -> dict[str, str]:
        """The SAGA_* variables that give a child process this Kafka security, these
        payload keys, body limit and claim-check store, secrets in the clear: for its
        environment only, never for output."""
        env = {}
        for f in fields(self):
            if f.name.startswith(("kafka_security", "kafka_sasl", "kafka_ssl", "payload_",
                                  "claim_check_", "max_payload_", "origin_key",
                                  "reply_key")):
                value = getattr(self, f.name)
                env[f"SAGA_{f.name.upper()}"] = value.reveal() if isinstance(value, Secret) \
                    else str(value)
        return env

    def origin_keys(self) -> OriginKeys:
        """The origin key and reply key, parsed (ConfigError when malformed)."""
        from saga.codec.origin import OriginKeys  # cryptography: only when used

        return OriginKeys.parse(self.origin_key.reveal(), self.reply_key.reveal())

    def topic(self, name: str) -> str:
        """The real topic name for a contract name such as ``saga.inbox``."""
        return f"{self.topic_prefix}{name}"


def _secret_file(name: str, path: str | None) -> str | None:
    """A secret given as SAGA_<NAME>_FILE (a Docker or Kubernetes secret mounted as a
    file): its content, without the trailing newline editors and `echo` add."""
    if not path:
        return None
    try:
        return Path(path).read_text().rstrip("\r\n")
    except OSError as exc:
        raise ConfigError(f"SAGA_{name.upper()}_FILE={path!r} cannot be read: "
                          f"{exc.strerror}",
                          hint=f"mount the secret there, or set SAGA_{name.upper()} "
                          "instead") from None


def _parse(name: str, annotation: object, raw: str) -> Any:
    kind = str(annotation)
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "Path":
            return Path(raw)
        if kind == "Secret":
            return Secret(raw)
        if kind == "bool":
            lowered = raw.strip().lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(raw)
            return lowered in ("true", "1", "yes")
    except ValueError:
        what = {"int": "a whole number", "bool": "true or false"}.get(kind, "a number")
        raise ConfigError(f"SAGA_{name.upper()}={raw!r} is not {what}",
                          hint=f"set SAGA_{name.upper()} to {what}") from None
    return raw
