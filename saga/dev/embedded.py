"""The embedded Kafka: Apache Kafka's own jars, from Maven Central, run as local JVMs.

`saga kafka start` resolves the pinned version (compose/kafka/VERSION) through the pom
under compose/kafka, formats KRaft storage and runs 1 or 3 combined broker+controller
nodes on loopback ports, with data under the state folder. The same broker properties
feed the container images through KAFKA_* variables (see `kafka_env`).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from confluent_kafka import KafkaException

from saga import _data
from saga.config import KafkaConnection, KafkaSecurity, Secret
from saga.dev.certificates import BROKER, CertificateFiles, issue_certificates
from saga.errors import EmbeddedKafkaError, EnvironmentMissing
from saga.kafka import clients
from saga.kafka.topics import service_names
from saga.layout import StateLayout

KAFKA_DIR = _data.kafka_dir()
KAFKA_VERSION = _data.kafka_version()
_CONTROLLER_PORT_OFFSET = 100
_INTERNAL_PORT_OFFSET = 200
SCRAM_MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256")
#: The secured cluster's super user, created with the storage (SCRAM-SHA-512).
ADMIN_USER = "admin"
_HEAP = "-Xmx512m"
#: JIT of the development brokers (embedded, and the tests' containers): the client
#: compiler only. A fresh broker's C2 compiler threads took 6 of its 12 CPU seconds in
#: a 4,000-saga run on two cores, while the broker's own work took 3, and left it 2.9x
#: the CPU per saga (bench/results: the profile of 2026-12-06); code compiled by C1 only
#: is slower at its peak, which a development broker never needs. SAGA_KAFKA_JVM_OPTS
#: replaces it (empty: the JVM's defaults).
DEV_JVM_OPTS = "-XX:TieredStopAtLevel=1"


def dev_jvm_opts() -> list[str]:
    return os.environ.get("SAGA_KAFKA_JVM_OPTS", DEV_JVM_OPTS).split()
Progress = Callable[[str], None]
# Popen objects of the nodes this process started: kept so they are reaped when they exit
# (no zombies, no ResourceWarning from a collected Popen of a running process).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def broker_threads(cores: int) -> dict[str, str]:
    """Kafka's request handler and network thread counts (8 and 3 per listener), never
    more than the machine's cores. A development broker shares a few cores with
    everything it serves; each request passes from a network thread to a handler and
    back, and on two cores the defaults' eleven threads turned those hand-offs into
    context switches: with 2 and 1, a steady 10 sagas/s cost the broker 15-20 % less
    CPU per saga and the step latency fell from p50/p99 27-38/81-90 to 20-22/41-57 ms
    (docs/benchmarks.md, sixth landing)."""
    return {"num.io.threads": str(min(8, max(2, cores))),
            "num.network.threads": str(min(3, max(1, cores // 2)))}


def kraft_properties(node_id: int, port: int, controller_port: int, voters: str,
                     replication: int, log_dir: str) -> dict[str, str]:
    """Broker properties of one combined KRaft node listening on loopback only."""
    return {
        "node.id": str(node_id),
        "process.roles": "broker,controller",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "controller.quorum.voters": voters,
        "log.dirs": log_dir,
        "num.partitions": "1",
        "offsets.topic.replication.factor": str(replication),
        "transaction.state.log.replication.factor": str(replication),
        "transaction.state.log.min.isr": str(min(2, replication)),
        "min.insync.replicas": "1",
        "group.initial.rebalance.delay.ms": "0",
        # Tests and the demo fence and recover coordinators; keep waits short.
        "transaction.abort.timed.out.transaction.cleanup.interval.ms": "10000",
        "auto.create.topics.enable": "false",
        **broker_threads(os.cpu_count() or 1),
    }


def secure_properties(port: int, internal_port: int, controller_port: int,
                      certificates: CertificateFiles) -> dict[str, str]:
    """What a secured node adds: clients on SASL_SSL (SCRAM), the nodes among themselves
    and with the controllers on TLS with client certificates, and the KRaft
    StandardAuthorizer denying whatever no ACL allows. The broker's certificate names it
    ``broker``, the one principal besides ``admin`` that needs no ACL."""
    jaas = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
    return {
        "listeners": f"SASL_SSL://127.0.0.1:{port},INTERNAL://127.0.0.1:{internal_port},"
                     f"CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"SASL_SSL://127.0.0.1:{port},"
                                f"INTERNAL://127.0.0.1:{internal_port}",
        "listener.security.protocol.map": "SASL_SSL:SASL_SSL,INTERNAL:SSL,CONTROLLER:SSL",
        "inter.broker.listener.name": "INTERNAL",
        "sasl.enabled.mechanisms": ",".join(SCRAM_MECHANISMS),
        **{f"listener.name.sasl_ssl.{m.lower()}.sasl.jaas.config": jaas
           for m in SCRAM_MECHANISMS},
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(certificates.broker_keystore),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(certificates.ca),
        "listener.name.internal.ssl.client.auth": "required",
        "listener.name.controller.ssl.client.auth": "required",
        # "CN=broker" -> "broker", so super.users and ACLs name certificates plainly.
        "ssl.principal.mapping.rules": "RULE:^CN=([^,]+)$/$1/,DEFAULT",
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": f"User:{BROKER};User:{ADMIN_USER}",
        "allow.everyone.if.no.acl.found": "false",
    }


def kafka_env(properties: dict[str, str]) -> dict[str, str]:
    """The same properties as the KAFKA_* variables the apache/kafka image reads."""
    env = {}
    for key, value in properties.items():
        name = key.replace("_", "__").replace("-", "___").replace(".", "_").upper()
        env[f"KAFKA_{name}"] = value
    return env


def new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64.

    One that starts with '-' would be read as an option by kafka-storage's argument
    parser, so such ids are drawn again.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if cluster_id[0] != "-":
            return cluster_id


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_brokers(bootstrap: str, count: int, timeout_s: float, *,
                     security: KafkaSecurity | None = None) -> None:
    """Block until the cluster answers metadata requests with ``count`` brokers."""
    deadline = time.monotonic() + timeout_s
    first_host, first_port = bootstrap.split(",")[0].rsplit(":", 1)
    # Wait for the port first: librdkafka logs every refused connection to stderr.
    while time.monotonic() < deadline and not _listening(int(first_port), first_host):
        time.sleep(0.2)
    admin = clients.admin(KafkaConnection(bootstrap, security or KafkaSecurity()),
                          **{"socket.timeout.ms": 3000})
    seen = 0
    while time.monotonic() < deadline:
        try:
            seen = len(admin.list_topics(timeout=3).brokers)
            if seen >= count:
                return
        except KafkaException:
            pass
        time.sleep(0.3)
    raise EmbeddedKafkaError(f"Kafka at {bootstrap} showed {seen} of {count} brokers "
                             f"after {timeout_s:.0f}s")


@dataclass
class Node:
    node_id: int
    port: int
    controller_port: int
    pid: int = 0
    #: The nodes' own TLS listener (secured clusters only).
    internal_port: int = 0
    #: The JIT options it was started with; None when started by a build that did not
    #: record them.
    jvm_opts: list[str] | None = None


@dataclass
class ClusterState:
    version: str
    cluster_id: str
    brokers: int
    nodes: list[Node]
    #: SASL_SSL with SCRAM for clients, TLS among nodes, ACLs enforced.
    secure: bool = False

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)


class EmbeddedKafka:
    """Start, stop and inspect the local cluster kept under ``state_dir/kafka``."""

    def __init__(self, state_dir: Path, *, base_port: int = 29092,
                 lib_dir: Path | None = None, progress: Progress | None = None,
                 jvm_opts: Sequence[str] | None = None) -> None:
        """``jvm_opts`` are the JIT options of the nodes it starts; None: dev_jvm_opts()."""
        self.root = StateLayout(state_dir.resolve()).kafka
        self.base_port = base_port
        self._jvm_opts = list(dev_jvm_opts() if jvm_opts is None else jvm_opts)
        cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
        self.lib_dir = lib_dir or cache / "kafka-saga" / f"kafka-{KAFKA_VERSION}" / "libs"
        self._say = progress or (lambda msg: print(msg, file=sys.stderr, flush=True))

    # ---- queries -------------------------------------------------------------------
    def state(self) -> ClusterState | None:
        path = self.root / "cluster.json"
        if not path.exists():
            return None
        raw = json.loads(path.read_text())
        return ClusterState(raw["version"], raw["cluster_id"], raw["brokers"],
                            [Node(**n) for n in raw["nodes"]], raw.get("secure", False))

    @property
    def certificates(self) -> CertificateFiles:
        return CertificateFiles(self.root / "certificates")

    def admin_security(self) -> KafkaSecurity | None:
        """How the admin principal reaches a secured cluster; None for a plain one."""
        return self.security_for(ADMIN_USER)

    def security_for(self, user: str) -> KafkaSecurity | None:
        """How ``user`` (see ``users``) reaches a secured cluster; None for a plain one."""
        state = self.state()
        if state is None or not state.secure:
            return None
        if user not in users():
            raise EmbeddedKafkaError(f"the secured embedded cluster has no user {user!r}",
                                     hint=f"use one of {', '.join(users())}")
        return KafkaSecurity(protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
                             sasl_username=user, sasl_password=Secret(self._password(user)),
                             ssl_ca_file=str(self.certificates.ca))

    def password_file(self, user: str) -> Path:
        return self.root / "users" / f"{user}.password"

    def _password(self, user: str) -> str:
        path = self.password_file(user)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch(0o600)
            path.write_text(uuid.uuid4().hex)
        return path.read_text().strip()

    def alive(self, node: Node) -> bool:
        child = _CHILDREN.get(node.pid)
        if child is not None and child.poll() is not None:
            del _CHILDREN[node.pid]
        return _is_our_process(node.pid, self._node_dir(node.node_id))

    def status(self) -> dict[str, object]:
        state = self.state()
        if state is None:
            return {"running": False, "brokers": 0, "bootstrap_servers": None,
                    "version": KAFKA_VERSION, "state_dir": str(self.root), "nodes": []}
        nodes = [{**asdict(n), "alive": self.alive(n), "listening": _listening(n.port),
                  "log": str(self._node_dir(n.node_id) / "server.log")} for n in state.nodes]
        security = self.admin_security()
        return {"running": all(n["alive"] and n["listening"] for n in nodes),
                "brokers": state.brokers, "bootstrap_servers": state.bootstrap_servers,
                "version": state.version, "state_dir": str(self.root), "nodes": nodes,
                "secure": state.secure,
                # The password stays in its file: status output ends up in logs.
                **({"security": {"protocol": security.protocol,
                                 "sasl_mechanism": security.sasl_mechanism,
                                 "sasl_username": security.sasl_username,
                                 "sasl_password_file": str(self.password_file(ADMIN_USER)),
                                 "users": users(),
                                 "ssl_ca_file": security.ssl_ca_file}} if security else {})}

    def bootstrap_servers(self) -> str | None:
        state = self.state()
        return state.bootstrap_servers if state else None

    # ---- lifecycle -----------------------------------------------------------------
    def start(self, brokers: int = 1, *, secure: bool = False,
              timeout_s: float = 120.0) -> ClusterState:
        """Start the cluster, or return the running one; idempotent."""
        if brokers not in (1, 3):
            raise EmbeddedKafkaError(f"--brokers must be 1 or 3, not {brokers}")
        state = self.state()
        if state is not None and (state.brokers, state.secure) != (brokers, secure):
            kind = f"{state.brokers}-broker{' secured' if state.secure else ''}"
            if any(self.alive(n) for n in state.nodes):
                raise EmbeddedKafkaError(
                    f"a {kind} cluster is running",
                    hint="run `saga kafka stop` before starting one of another kind")
            self._say(f"removing the stopped {kind} cluster's data")
            shutil.rmtree(self.root / "nodes", ignore_errors=True)
            state = None
        if state is not None and state.version != KAFKA_VERSION:
            raise EmbeddedKafkaError(
                f"the stored cluster is Kafka {state.version}, this build pins {KAFKA_VERSION}",
                hint=f"run `saga kafka stop` and delete {self.root} to start afresh")
        if state is None:
            state = self._new_state(brokers, secure)
        down = [n for n in state.nodes if not self.alive(n)]
        if down:
            java = require_java()
            self.ensure_libs()
            for node in down:
                ports = [p for p in (node.port, node.controller_port, node.internal_port) if p]
                if any(_listening(p) for p in ports):
                    raise EmbeddedKafkaError(
                        f"one of the ports {ports} is taken by another process",
                        hint="free it, or set SAGA_KAFKA_PORT to another base port")
            self._say(f"starting Kafka {KAFKA_VERSION}: {brokers} broker(s)")
            for node in down:
                node.pid = self._spawn(java, state, node)
                node.jvm_opts = list(self._jvm_opts)
            self._save(state)
        try:
            wait_for_brokers(state.bootstrap_servers, brokers, timeout_s,
                             security=self.admin_security())
        except EmbeddedKafkaError as exc:
            logs = "\n".join(self._log_tail(n.node_id) for n in state.nodes)
            raise EmbeddedKafkaError(f"{exc}; last log lines:\n{logs}",
                                     hint="see the node logs under " + str(self.root)) from exc
        return state

    def stop(self, *, timeout_s: float = 30.0) -> list[int]:
        """Stop every node; SIGKILL what has not exited in time. Returns stopped pids."""
        state = self.state()
        if state is None:
            return []
        live = [n for n in state.nodes if self.alive(n)]
        stopped = [n.pid for n in live]  # before the pids are cleared below
        for node in live:
            _signal(node.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and any(self.alive(n) for n in live):
            time.sleep(0.2)
        for node in live:
            if self.alive(node):
                _signal(node.pid, signal.SIGKILL)
        while any(self.alive(n) for n in live):
            time.sleep(0.1)
        for node in state.nodes:
            node.pid = 0
        self._save(state)
        return stopped

    def kill_node(self, node_id: int, sig: int = signal.SIGKILL) -> None:
        """Stop one node (for broker-restart tests); `start` brings it back."""
        state = self.state()
        node = next((n for n in state.nodes if n.node_id == node_id), None) if state else None
        if node is None or not self.alive(node):
            raise EmbeddedKafkaError(f"node {node_id} is not running")
        _signal(node.pid, sig)
        while self.alive(node):
            time.sleep(0.1)

    def ensure_libs(self) -> Path:
        """Resolve the broker's jars from Maven Central once; later calls reuse them."""
        marker = self.lib_dir / ".complete"
        if marker.exists():
            return self.lib_dir
        mvn = shutil.which("mvn")
        if mvn is None:
            raise EnvironmentMissing(
                "Maven is needed once to fetch the Kafka broker from Maven Central",
                hint="install it (Debian: apt-get install maven), or point "
                "SAGA_BOOTSTRAP_SERVERS at an existing cluster")
        self._say(f"resolving Kafka {KAFKA_VERSION} from Maven Central into {self.lib_dir}")
        staging = self.lib_dir.with_name(self.lib_dir.name + f".tmp{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        result = subprocess.run(
            [mvn, "-q", "-B", "-f", str(KAFKA_DIR / "pom.xml"), "dependency:copy-dependencies",
             f"-Dkafka.version={KAFKA_VERSION}", "-DincludeScope=runtime",
             f"-DoutputDirectory={staging}"],
            capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise EmbeddedKafkaError(
                "Maven could not resolve the Kafka broker:\n" + result.stdout[-2000:]
                + result.stderr[-2000:], hint="check that Maven Central is reachable")
        (staging / ".complete").write_text(KAFKA_VERSION)
        shutil.rmtree(self.lib_dir, ignore_errors=True)
        self.lib_dir.parent.mkdir(parents=True, exist_ok=True)
        staging.rename(self.lib_dir)
        return self.lib_dir

    # ---- internals -----------------------------------------------------------------
    def _new_state(self, brokers: int, secure: bool) -> ClusterState:
        nodes = [Node(i + 1, self.base_port + i, self.base_port + _CONTROLLER_PORT_OFFSET + i,
                      internal_port=self.base_port + _INTERNAL_PORT_OFFSET + i if secure else 0)
                 for i in range(brokers)]
        state = ClusterState(KAFKA_VERSION, new_cluster_id(), brokers, nodes, secure)
        if secure:
            issue_certificates(self.certificates.folder)
        self._save(state)
        return state

    def _node_dir(self, node_id: int) -> Path:
        return self.root / "nodes" / f"node-{node_id}"

    def _spawn(self, java: str, state: ClusterState, node: Node) -> int:
        node_dir = self._node_dir(node.node_id)
        data = node_dir / "data"
        data.mkdir(parents=True, exist_ok=True)
        voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in state.nodes)
        props = kraft_properties(node.node_id, node.port, node.controller_port, voters,
                                 replication=state.brokers, log_dir=str(data))
        scram: list[str] = []
        if state.secure:
            props.update(secure_properties(node.port, node.internal_port,
                                           node.controller_port, self.certificates))
            scram = [arg for user in users() for m in SCRAM_MECHANISMS for arg in
                     ("--add-scram", f"{m}=[name={user},password={self._password(user)}]")]
        config = node_dir / "server.properties"
        config.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        config.chmod(0o600)
        classpath = f"{self.lib_dir}/*"
        if not (data / "meta.properties").exists():
            fmt = subprocess.run(
                [java, "-cp", classpath, "kafka.tools.StorageTool", "format",
                 "--ignore-formatted", "-t", state.cluster_id, "-c", str(config), *scram],
                capture_output=True, text=True, check=False)
            if fmt.returncode != 0:
                said = fmt.stdout + fmt.stderr
                if state.secure:  # the tool may quote its --add-scram arguments
                    for user in users():
                        said = said.replace(self._password(user), "***")
                raise EmbeddedKafkaError(f"formatting node {node.node_id} failed: {said}")
        log = (node_dir / "server.log").open("ab")
        process = subprocess.Popen(
            [java, _HEAP, "-Xms128m", *self._jvm_opts,
             f"-Dlog4j2.configurationFile={KAFKA_DIR / 'log4j2.properties'}",
             "-cp", classpath, "kafka.Kafka", str(config)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=node_dir, start_new_session=True)
        log.close()
        _CHILDREN[process.pid] = process
        return process.pid

    def _save(self, state: ClusterState) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / "cluster.json.tmp"
        tmp.write_text(json.dumps(asdict(state), indent=2))
        tmp.replace(self.root / "cluster.json")

    def _log_tail(self, node_id: int, lines: int = 15) -> str:
        path = self._node_dir(node_id) / "server.log"
        if not path.exists():
            return f"(node {node_id}: no log)"
        tail = path.read_text(errors="replace").splitlines()[-lines:]
        return f"--- node {node_id} ({path})\n" + "\n".join(tail)


def users() -> list[str]:
    """The SCRAM users a secured embedded cluster is formatted with: the admin, and one
    principal per role of docs/security.md (ACLs come from `saga acl apply`)."""
    return [ADMIN_USER, "coordinator", "server", "client",
            *(f"service-{name}" for name in service_names())]


def require_java() -> str:
    java = shutil.which("java")
    hint = ("install a Java 17+ runtime (Debian: apt-get install openjdk-17-jre-headless), "
            "or point SAGA_BOOTSTRAP_SERVERS at an existing cluster")
    if java is None:
        raise EnvironmentMissing("Java 17 or newer is needed to run the embedded Kafka broker",
                                 hint=hint)
    result = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    match = re.search(r'version "(\d+)', result.stderr + result.stdout)
    if match is None or int(match[1]) < 17:
        found = match[1] if match else "unknown"
        raise EnvironmentMissing(f"Kafka {KAFKA_VERSION} needs Java 17+, found {found}",
                                 hint=hint)
    return java


def _is_our_process(pid: int, node_dir: Path) -> bool:
    if pid <= 0:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # A zombie (state Z) has exited; its parent just has not reaped it yet.
    if stat.rsplit(")", 1)[-1].split()[0] == "Z":
        return False
    return str(node_dir / "server.properties").encode() in cmdline


def _listening(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
