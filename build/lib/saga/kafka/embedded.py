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
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from saga.config import PROJECT_ROOT
from saga.errors import EmbeddedKafkaError, EnvironmentMissing

KAFKA_DIR = PROJECT_ROOT / "compose" / "kafka"
KAFKA_VERSION = (KAFKA_DIR / "VERSION").read_text().strip()
_CONTROLLER_PORT_OFFSET = 100
_HEAP = "-Xmx512m"
Progress = Callable[[str], None]
# Popen objects of the nodes this process started: kept so they are reaped when they exit
# (no zombies, no ResourceWarning from a collected Popen of a running process).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


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


def wait_for_brokers(bootstrap: str, count: int, timeout_s: float) -> None:
    """Block until the cluster answers metadata requests with ``count`` brokers."""
    deadline = time.monotonic() + timeout_s
    first_host, first_port = bootstrap.split(",")[0].rsplit(":", 1)
    # Wait for the port first: librdkafka logs every refused connection to stderr.
    while time.monotonic() < deadline and not _listening(int(first_port), first_host):
        time.sleep(0.2)
    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 3000})
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


@dataclass
class ClusterState:
    version: str
    cluster_id: str
    brokers: int
    nodes: list[Node]

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)


class EmbeddedKafka:
    """Start, stop and inspect the local cluster kept under ``state_dir/kafka``."""

    def __init__(self, state_dir: Path, *, base_port: int = 29092,
                 lib_dir: Path | None = None, progress: Progress | None = None) -> None:
        self.root = state_dir.resolve() / "kafka"
        self.base_port = base_port
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
                            [Node(**n) for n in raw["nodes"]])

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
        return {"running": all(n["alive"] and n["listening"] for n in nodes),
                "brokers": state.brokers, "bootstrap_servers": state.bootstrap_servers,
                "version": state.version, "state_dir": str(self.root), "nodes": nodes}

    def bootstrap_servers(self) -> str | None:
        state = self.state()
        return state.bootstrap_servers if state else None

    # ---- lifecycle -----------------------------------------------------------------
    def start(self, brokers: int = 1, *, timeout_s: float = 120.0) -> ClusterState:
        """Start the cluster, or return the running one; idempotent."""
        if brokers not in (1, 3):
            raise EmbeddedKafkaError(f"--brokers must be 1 or 3, not {brokers}")
        state = self.state()
        if state is not None and state.brokers != brokers:
            if any(self.alive(n) for n in state.nodes):
                raise EmbeddedKafkaError(
                    f"a {state.brokers}-broker cluster is running",
                    hint="run `saga kafka stop` before starting one of another size")
            self._say(f"removing the stopped {state.brokers}-broker cluster's data")
            shutil.rmtree(self.root / "nodes", ignore_errors=True)
            state = None
        if state is not None and state.version != KAFKA_VERSION:
            raise EmbeddedKafkaError(
                f"the stored cluster is Kafka {state.version}, this build pins {KAFKA_VERSION}",
                hint=f"run `saga kafka stop` and delete {self.root} to start afresh")
        if state is None:
            state = self._new_state(brokers)
        down = [n for n in state.nodes if not self.alive(n)]
        if down:
            java = require_java()
            self.ensure_libs()
            for node in down:
                if _listening(node.port) or _listening(node.controller_port):
                    raise EmbeddedKafkaError(
                        f"port {node.port} or {node.controller_port} is taken by another "
                        "process", hint="free it, or set SAGA_KAFKA_PORT to another base port")
            self._say(f"starting Kafka {KAFKA_VERSION}: {brokers} broker(s)")
            for node in down:
                node.pid = self._spawn(java, state, node)
            self._save(state)
        try:
            wait_for_brokers(state.bootstrap_servers, brokers, timeout_s)
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
        return [n.pid for n in live]

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
    def _new_state(self, brokers: int) -> ClusterState:
        nodes = [Node(i + 1, self.base_port + i, self.base_port + _CONTROLLER_PORT_OFFSET + i)
                 for i in range(brokers)]
        state = ClusterState(KAFKA_VERSION, new_cluster_id(), brokers, nodes)
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
        config = node_dir / "server.properties"
        config.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        classpath = f"{self.lib_dir}/*"
        if not (data / "meta.properties").exists():
            fmt = subprocess.run(
                [java, "-cp", classpath, "kafka.tools.StorageTool", "format",
                 "--ignore-formatted", "-t", state.cluster_id, "-c", str(config)],
                capture_output=True, text=True, check=False)
            if fmt.returncode != 0:
                raise EmbeddedKafkaError(f"formatting node {node.node_id} failed: "
                                         f"{fmt.stdout}{fmt.stderr}")
        log = (node_dir / "server.log").open("ab")
        process = subprocess.Popen(
            [java, _HEAP, "-Xms128m",
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
