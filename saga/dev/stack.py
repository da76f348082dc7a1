"""Run the coordinator and the example services as real processes, and talk to them.

`make demo`, the system tests and the benchmarks all use this: every process is the
real `saga` command line in its own session, so a test can SIGKILL it like an operator
(or the OOM killer) would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from saga.config import Settings
from saga.dev.embedded import free_port
from saga.engine.inputs import Input
from saga.engine.state import SagaState
from saga.examples.services import SERVICES
from saga.kafka.inbox import InboxProducer
from saga.layout import StateLayout
from saga.store.local_projections import LocalProjections

#: The example services, in the order the stack starts them.
SERVICE_NAMES = tuple(SERVICES)


@dataclass
class Process:
    name: str
    argv: list[str]
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    env: dict[str, str] = field(default_factory=dict)
    #: This run's exit is accounted for: the Stack signalled it, or noted it as a crash.
    exit_accounted: bool = False
    #: Exits nobody asked for, with the log tail at the time (kept across restarts).
    crashes: list[str] = field(default_factory=list)

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None


class Stack:
    def __init__(self, settings: Settings, *, stock: dict[str, int] | None = None,
                 workflows: str | None = None, metrics: bool = False,
                 process_env: Callable[[str], dict[str, str]] | None = None) -> None:
        """``metrics``: every coordinator and service serves Prometheus /metrics on a
        free loopback port (``metrics_url(name)``). ``process_env``: variables of one
        process by its name (e.g. its own Kafka principal), over the stack's own."""
        self.settings = settings
        self.process_env = process_env or (lambda name: {})
        self.metrics = metrics
        self.metrics_ports: dict[str, int] = {}
        self.log_dir = StateLayout(settings.state_dir).logs
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.workflows = workflows
        self.processes: dict[str, Process] = {}
        self.stock_file = settings.state_dir / "stock.json"
        if stock is not None:
            self.stock_file.write_bytes(orjson.dumps(stock))
        self.inbox = InboxProducer(settings)

    # ---- processes -----------------------------------------------------------------
    def env(self) -> dict[str, str]:
        env = {**os.environ,
               "SAGA_BOOTSTRAP_SERVERS": self.settings.bootstrap_servers,
               "SAGA_TOPIC_PREFIX": self.settings.topic_prefix,
               "SAGA_STATE_DIR": str(self.settings.state_dir),
               "SAGA_PARTITIONS": str(self.settings.partitions),
               "SAGA_REPLICATION_FACTOR": str(self.settings.replication_factor),
               **self.settings.child_env(),
               "PYTHONUNBUFFERED": "1"}
        if self.workflows:
            env["SAGA_WORKFLOWS"] = self.workflows
        return env

    def add_coordinator(self, instance_id: str = "c1", *extra: str, name: str | None = None,
                        env: dict[str, str] | None = None) -> Process:
        label = name or f"coordinator-{instance_id}"
        return self._add(label, ["coordinator", "run", "--instance-id", instance_id, *extra,
                                 *self._metrics_flag(label)], env)

    def add_service(self, name: str, module: str | None = None, *,
                    instance_id: str | None = None) -> Process:
        """An example service, or one from ``module``'s SERVICES; ``instance_id`` for a
        second (third...) instance of the same service."""
        extra = ["--stock", str(self.stock_file)] if name == "inventory" \
            and self.stock_file.exists() and module is None else []
        if module is not None:
            extra += ["--module", module]
        extra += ["--instance-id", instance_id or "1"]
        label = f"service-{name}" + (f"-{instance_id}" if instance_id else "")
        return self._add(label, ["service", "run", name, *extra, *self._metrics_flag(label)])

    def _metrics_flag(self, name: str) -> list[str]:
        if not self.metrics:
            return []
        port = self.metrics_ports.setdefault(name, free_port())
        return ["--metrics-port", str(port)]

    def metrics_url(self, name: str) -> str:
        """Where process ``name`` serves its metrics (a server: beside its API)."""
        if name in self.metrics_ports:
            return f"http://127.0.0.1:{self.metrics_ports[name]}/metrics"
        return f"{self.url(name)}/metrics"

    def add_server(self, instance_id: str = "s1", port: int | None = None) -> Process:
        """A visibility server (`saga server`) on a free loopback port; ``url(name)``."""
        port = port or free_port()
        return self._add(f"server-{instance_id}", ["server", "--port", str(port),
                                                   "--instance-id", instance_id])

    def url(self, name: str) -> str:
        """The base URL of a server added with ``add_server``."""
        argv = self.processes[name].argv
        return f"http://127.0.0.1:{argv[argv.index('--port') + 1]}"

    def start_all(self, coordinators: Iterable[str] = ("c1",), *,
                  coordinator_env: dict[str, str] | None = None) -> None:
        for instance_id in coordinators:
            self.start(self.add_coordinator(instance_id, env=coordinator_env).name)
        for name in SERVICE_NAMES:
            self.start(self.add_service(name).name)

    def start(self, name: str) -> Process:
        process = self.processes[name]
        if process.alive:
            return process
        if process.popen is not None:
            self._note_crash(process)
            process.restarts += 1
        process.exit_accounted = False
        # The child keeps its own descriptor; holding ours open would leak one per
        # restart of a process that died on its own.
        with process.log_path.open("ab") as log:
            process.popen = subprocess.Popen(
                [sys.executable, "-m", "saga.cli.main", *process.argv],
                env={**self.env(), **process.env},
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        return process

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        process = self.processes[name]
        self._note_crash(process)
        if process.popen is not None and process.alive:
            process.exit_accounted = True
            process.popen.send_signal(sig)
            process.popen.wait(60)

    def pause(self, name: str) -> None:
        """SIGSTOP: the process stays alive but does nothing, as a stalled VM or a long
        GC pause would; it keeps believing it owns what it owned."""
        popen = self.processes[name].popen
        if popen is not None and popen.poll() is None:
            popen.send_signal(signal.SIGSTOP)

    def resume(self, name: str) -> None:
        popen = self.processes[name].popen
        if popen is not None and popen.poll() is None:
            popen.send_signal(signal.SIGCONT)

    def stop_all(self, timeout_s: float = 30) -> None:
        for process in self.processes.values():
            self._note_crash(process)
            if process.alive and process.popen is not None:
                process.exit_accounted = True
                process.popen.send_signal(signal.SIGCONT)  # a paused one cannot stop
                process.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for name, process in self.processes.items():
            if process.popen is not None:
                try:
                    process.popen.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    self.kill(name)

    def dead(self) -> list[str]:
        """Every exit this Stack did not cause, now or before a restart, with log tails.

        A process that stopped by itself and was started again still counts: a
        restart must not hide a crash."""
        for process in self.processes.values():
            self._note_crash(process)
        return [crash for p in self.processes.values() for crash in p.crashes]

    def _note_crash(self, process: Process) -> None:
        popen = process.popen
        if popen is None or popen.poll() is None or process.exit_accounted:
            return
        process.exit_accounted = True  # noted once per run of the process
        process.crashes.append(f"{process.name} exited {popen.returncode}:\n"
                               f"{self.log_tail(process.name)}")

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.processes[name].log_path
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def _add(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Process:
        if name not in self.processes:
            self.processes[name] = Process(name, argv, self.log_dir / f"{name}.log",
                                           env={**self.process_env(name), **(env or {})})
        return self.processes[name]

    # ---- clients ----------------------------------------------------------------
    def send(self, saga_id: str, value: Input) -> None:
        """Queue an input for saga.inbox; `flush()` delivers."""
        self.inbox.send(saga_id, value)

    def send_raw(self, key: bytes | None, value: bytes | None) -> None:
        self.inbox.send_raw(key, value)

    def flush(self) -> None:
        self.inbox.flush(60)

    def states(self) -> dict[str, SagaState]:
        if not StateLayout(self.settings.state_dir).projections():
            return {}
        projections = LocalProjections(self.settings)
        try:
            return {s.saga_id: s for s in projections.states()}
        finally:
            projections.close()

    def wait_until(self, done: Callable[[dict[str, SagaState]], bool], timeout_s: float,
                   *, on_poll: Callable[[dict[str, SagaState]], Any] | None = None,
                   poll_s: float = 0.5) -> dict[str, SagaState]:
        deadline = time.monotonic() + timeout_s
        while True:
            states = self.states()
            if on_poll is not None:
                on_poll(states)
            if done(states) or time.monotonic() >= deadline:
                return states
            time.sleep(poll_s)
