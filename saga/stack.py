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
from saga.engine.inputs import Input
from saga.engine.state import SagaState
from saga.kafka import clients
from saga.kafka.messages import Messages

SERVICE_NAMES = ("payments", "inventory", "shipping", "notifications", "ops")


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
                 workflows: str | None = None) -> None:
        self.settings = settings
        self.log_dir = settings.state_dir / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.workflows = workflows
        self.processes: dict[str, Process] = {}
        self.stock_file = settings.state_dir / "stock.json"
        if stock is not None:
            self.stock_file.write_bytes(orjson.dumps(stock))
        self.messages = Messages(max_payload_bytes=settings.max_payload_bytes)
        self._producer = clients.producer(settings.bootstrap_servers)

    # ---- processes -----------------------------------------------------------------
    def env(self) -> dict[str, str]:
        env = {**os.environ,
               "SAGA_BOOTSTRAP_SERVERS": self.settings.bootstrap_servers,
               "SAGA_TOPIC_PREFIX": self.settings.topic_prefix,
               "SAGA_STATE_DIR": str(self.settings.state_dir),
               "SAGA_PARTITIONS": str(self.settings.partitions),
               "SAGA_REPLICATION_FACTOR": str(self.settings.replication_factor),
               "PYTHONUNBUFFERED": "1"}
        if self.workflows:
            env["SAGA_WORKFLOWS"] = self.workflows
        return env

    def add_coordinator(self, instance_id: str = "c1", *extra: str, name: str | None = None,
                        env: dict[str, str] | None = None) -> Process:
        return self._add(name or f"coordinator-{instance_id}",
                         ["coordinator", "run", "--instance-id", instance_id, *extra], env)

    def add_service(self, name: str, module: str | None = None) -> Process:
        """An example service, or one from ``module``'s SERVICES."""
        extra = ["--stock", str(self.stock_file)] if name == "inventory" \
            and self.stock_file.exists() and module is None else []
        if module is not None:
            extra += ["--module", module]
        return self._add(f"service-{name}", ["service", "run", name, *extra])

    def start_all(self, coordinators: Iterable[str] = ("c1",)) -> None:
        for instance_id in coordinators:
            self.start(self.add_coordinator(instance_id).name)
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

    def stop_all(self, timeout_s: float = 30) -> None:
        for process in self.processes.values():
            self._note_crash(process)
            if process.alive and process.popen is not None:
                process.exit_accounted = True
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
                                           env=env or {})
        return self.processes[name]

    # ---- clients -------------------------------------------------------------------
    def send(self, saga_id: str, value: Input) -> None:
        """Queue an input for saga.inbox; `flush()` delivers."""
        data = self.messages.encode_inbox(saga_id, value)
        while True:
            try:
                self._producer.produce(self.settings.topic("saga.inbox"), data,
                                       saga_id.encode())
                return
            except BufferError:
                self._producer.poll(0.1)

    def send_raw(self, key: bytes | None, value: bytes | None) -> None:
        self._producer.produce(self.settings.topic("saga.inbox"), value, key)

    def flush(self) -> None:
        left = self._producer.flush(60)
        if left:
            raise RuntimeError(f"{left} inbox records were not delivered")

    def states(self) -> dict[str, SagaState]:
        from saga.cli.reads import LocalProjections, projection_dirs

        if not projection_dirs(self.settings):
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
