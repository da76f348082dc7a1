"""The order saga on Restate: the real server (`restate-server`, from npm) with its data dir
under the work dir, the workflow and its steps in the Python SDK
(bench/peers/restate_service.py) served by hypercorn in a second process (the SDK's own
way to deploy), and the client that drives the load in this process through the
server's HTTP ingress.

    python -m bench.peers.restate_peer --sagas 200 --concurrency 50 --work /tmp/peer-restate

The client starts the workflow's ``run`` (``/send``), sends it the ``warehouse_picked``
signal (``/send`` to the workflow's shared handler, which resolves the durable promise
``run`` waits on), then attaches to the workflow for its output.

restate-server 1.7 asks GitHub for its latest release at every start-up, whatever the
configuration says (``check_if_latest_version`` in its server crate, unlike its
telemetry, which ``disable-telemetry`` turns off). So the run happens in a network
namespace of its own with nothing but loopback (``unshare --net``): the server, the SDK
process and this client talk over that namespace's 127.0.0.1 and nothing can leave the
machine (nor can the ports clash with anything outside). The server is installed with
npm before that, outside the namespace.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import json
import os
import platform
import shutil
import socket
import struct
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx

from bench.peers import common

SERVER_VERSION = "1.7.12"  # @restatedev/restate-server on npm
REPO = Path(__file__).resolve().parents[2]
#: npm's folder for the server, git-ignored and kept between runs.
NPM_PREFIX = REPO / ".peers" / "restate"
HOST = "127.0.0.1"
INGRESS_PORT = 18080
ADMIN_PORT = 19070
FABRIC_PORT = 15122
SDK_PORT = 19080
#: The workflow's name (bench/peers/restate_service.py registers it under this one).
WORKFLOW = "OrderSaga"
READY_TIMEOUT_S = 60.0
#: The attach call waits for the workflow's end; a saga slower than this is a failure.
RESULT_TIMEOUT_S = 120.0


# ---- the server: installed from npm, outside the namespace ---------------------------
def _npm_arch() -> str:
    machine = platform.machine().lower()
    arch = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(machine)
    if platform.system() != "Linux" or arch is None:
        raise RuntimeError(f"no restate-server build on npm for {platform.system()} {machine} "
                           "here: this driver runs on Linux x86_64 or arm64")
    return arch


def server_binary(say: Callable[[str], None]) -> Path:
    """The restate-server binary of npm's platform package, installed under .peers/
    when missing or of another version. npm's wrapper (`.bin/restate-server`) is a node
    process that only spawns this binary: running the binary saves a process."""
    package = NPM_PREFIX / "node_modules" / "@restatedev" / f"restate-server-linux-{_npm_arch()}"
    binary = package / "bin" / "restate-server"
    try:
        installed = json.loads((package / "package.json").read_text())["version"]
    except (FileNotFoundError, KeyError, ValueError):
        installed = None
    if installed == SERVER_VERSION and binary.is_file():
        return binary
    npm = shutil.which("npm")
    if npm is None:
        raise FileNotFoundError("no npm on PATH: Restate's server comes from the npm registry "
                                "(apt-get install -y nodejs npm)")
    say(f"restate: npm install @restatedev/restate-server@{SERVER_VERSION} into {NPM_PREFIX}")
    NPM_PREFIX.mkdir(parents=True, exist_ok=True)
    # --ignore-scripts: the package's only install script is a usage ping (@scarf/scarf).
    subprocess.run([npm, "install", "--prefix", str(NPM_PREFIX), "--no-audit", "--no-fund",
                    "--ignore-scripts", f"@restatedev/restate-server@{SERVER_VERSION}"],
                   check=True, stdout=sys.stderr, timeout=600)
    if not binary.is_file():
        raise RuntimeError(f"npm installed no {binary}")
    return binary


def write_config(work: Path) -> Path:
    """The server's configuration: loopback TCP listeners only (no Unix sockets), the
    data under the work dir, no telemetry; durability settings at their defaults."""
    config = work / "restate.toml"
    config.write_text(
        'node-name = "peer-bench"\n'
        f'base-dir = "{work / "restate-data"}"\n'
        'listen-mode = "tcp"\n'
        f'bind-address = "{HOST}:{FABRIC_PORT}"\n'
        f'advertised-address = "http://{HOST}:{FABRIC_PORT}/"\n'
        "disable-telemetry = true\n"
        "[admin]\n"
        f'bind-address = "{HOST}:{ADMIN_PORT}"\n'
        "[ingress]\n"
        f'bind-address = "{HOST}:{INGRESS_PORT}"\n')
    return config


def effective_config(binary: Path, config: Path) -> dict[str, Any]:
    """The configuration the server runs with, defaults included (its --dump-config)."""
    out = subprocess.run([str(binary), "--config-file", str(config), "--dump-config"],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    return tomllib.loads(out)


def server_version(binary: Path) -> str:
    out = subprocess.run([str(binary), "--version"], capture_output=True, text=True,
                         check=True, timeout=30).stdout.strip()
    return out.removeprefix("restate-server").strip() or out  # e.g. "restate-server 1.7.12"


def durability(settings: dict[str, Any]) -> tuple[str, str]:
    """What the run persists and whether its log fsyncs, read from the configuration the
    server runs with (``--dump-config``) rather than assumed."""
    provider = settings["bifrost"]["default-provider"]
    # The replicated loglet stores its records on the log-servers, the local one in the
    # node's own RocksDB: each has its own fsync switch.
    section, store = ((settings["log-server"], "log-server") if provider == "replicated"
                      else (settings["bifrost"]["local"], "bifrost.local"))
    persists = (f"each invocation's journal (input, every ctx.run result, the promise's "
                f"value, the output) as records of Bifrost, Restate's log ({provider} "
                f"loglet, replication {settings.get('default-replication', '?')}, in "
                f"RocksDB), applied by the partition processors to their RocksDB stores")
    no_fsync = bool(section["rocksdb-disable-wal-fsync"])
    fsync = (f"{store} rocksdb-disable-wal-fsync={str(no_fsync).lower()} (Restate's config "
             "reference: 'Disable fsync of WAL on every batch'): its RocksDB WAL is "
             + ("not fsynced per batch" if no_fsync else "fsynced on every write batch")
             + "; that an append is acknowledged only after that fsync: not verified")
    return persists, fsync


# ---- the network namespace -----------------------------------------------------------
def unshare_prefix() -> list[str]:
    """The command that runs the rest in a new network namespace: as root directly, else
    in a user namespace that maps us to root (unprivileged user namespaces)."""
    unshare = shutil.which("unshare")
    if unshare is None:
        raise FileNotFoundError("no `unshare` (util-linux) on PATH")
    prefix = [unshare, "--net"] + ([] if os.geteuid() == 0 else ["--map-root-user"])
    probe = subprocess.run([*prefix, "true"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        raise RuntimeError(f"cannot make a network namespace ({probe.stderr.strip()}): the "
                           "Restate run needs one so that the server's start-up release check "
                           "cannot leave the machine")
    return [*prefix, "--"]


def loopback_up() -> None:
    """A new network namespace has `lo` down: bring it up (SIOCSIFFLAGS, as `ip link set
    lo up` does), so 127.0.0.1 answers inside."""
    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(sock, siocgifflags, request))[1]
        fcntl.ioctl(sock, siocsifflags, struct.pack("16sH14x", b"lo", flags | iff_up))


# ---- start-up ------------------------------------------------------------------------
def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def _port_open(port: int) -> bool:
    try:
        socket.create_connection((HOST, port), timeout=1).close()
    except OSError:
        return False
    return True


def _alive(process: subprocess.Popen[bytes], name: str, log: Path) -> None:
    if process.poll() is not None:
        raise RuntimeError(f"{name} exited ({process.returncode}); see {log}")


def register(server: subprocess.Popen[bytes], sdk: subprocess.Popen[bytes], work: Path,
             say: Callable[[str], None]) -> None:
    """Waits for the admin API and the SDK endpoint, registers the endpoint as a
    deployment (the server discovers the workflow from it), then waits for the ingress."""

    def admin_up() -> bool:
        _alive(server, "restate-server", work / "restate.log")
        return _answers(f"http://{HOST}:{ADMIN_PORT}/health")

    def sdk_up() -> bool:
        _alive(sdk, "hypercorn (restate-sdk)", work / "sdk.log")
        return _port_open(SDK_PORT)

    common.wait_until(admin_up, READY_TIMEOUT_S, "restate admin API answering")
    common.wait_until(sdk_up, READY_TIMEOUT_S, "the SDK endpoint listening")
    answer = httpx.post(f"http://{HOST}:{ADMIN_PORT}/deployments",
                        json={"uri": f"http://{HOST}:{SDK_PORT}"}, timeout=30)
    if answer.status_code not in (200, 201):
        raise RuntimeError(f"registering the deployment: {answer.status_code} {answer.text}")
    services = [s["name"] for s in answer.json().get("services", [])]
    if WORKFLOW not in services:
        raise RuntimeError(f"the SDK endpoint offers {services}, not {WORKFLOW}")
    say(f"restate: deployment registered, services {services}")
    common.wait_until(lambda: _answers(f"http://{HOST}:{INGRESS_PORT}/restate/health"),
                      READY_TIMEOUT_S, "restate ingress answering")


# ---- the load ------------------------------------------------------------------------
def _check(answer: httpx.Response, what: str) -> httpx.Response:
    if answer.status_code not in (200, 202):
        raise RuntimeError(f"{what}: {answer.status_code} {answer.text[:300]}")
    return answer


async def saga(client: httpx.AsyncClient, workflow_id: str, n: int) -> str:
    base = f"/{WORKFLOW}/{workflow_id}"
    _check(await client.post(f"{base}/run/send", json=common.order_input(workflow_id, n)),
           f"starting {workflow_id}")
    # A cancelled saga never awaits the promise; resolving it is still accepted.
    _check(await client.post(f"{base}/{common.SIGNAL}/send"), f"signalling {workflow_id}")
    result = _check(await client.get(f"/restate/workflow/{WORKFLOW}/{workflow_id}/attach",
                                     timeout=RESULT_TIMEOUT_S), f"awaiting {workflow_id}")
    return str(result.json()["status"])


async def first_saga(client: httpx.AsyncClient) -> None:
    """One saga outside the measurement, retried until the ingress knows the workflow:
    the registration reaches the ingress a moment after the admin API answers."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        try:
            await saga(client, "ready-1", 1)
            return
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.3)


async def drive(sagas: int, concurrency: int, meter: common.CpuMeter,
                say: Callable[[str], None]) -> tuple[list[float], dict[str, int], float]:
    limits = httpx.Limits(max_connections=concurrency + 8,
                          max_keepalive_connections=concurrency + 8)
    async with httpx.AsyncClient(base_url=f"http://{HOST}:{INGRESS_PORT}", limits=limits,
                                 timeout=30) as client:
        await first_saga(client)
        say(f"restate: {sagas} sagas, {concurrency} in flight")

        async def one(n: int) -> str:
            return await saga(client, f"order-{n}", n)

        await common.warm_up(concurrency, one)
        meter.start()
        try:
            return await common.keep_in_flight(sagas, concurrency, one)
        finally:
            meter.stop()


def run(sagas: int, concurrency: int, work: Path, say: Callable[[str], None]
        ) -> common.PeerResult:
    """The measured run; inside the network namespace (see main)."""
    work.mkdir(parents=True, exist_ok=True)
    binary = server_binary(say)
    # A store left by an earlier run would make this run start on a bigger one, and its
    # finished workflows would refuse their ids.
    shutil.rmtree(work / "restate-data", ignore_errors=True)
    config = write_config(work)
    settings = effective_config(binary, config)
    persists, fsync = durability(settings)
    version = (f"restate-server {server_version(binary)}, restate-sdk "
               f"{metadata.version('restate-sdk')} on hypercorn {metadata.version('hypercorn')}")
    say(f"restate: starting {version}, logs in {work}")
    server = common.start_process([str(binary), "--config-file", str(config), "--no-logo",
                                   "--log-disable-ansi-codes", "true"], work / "restate.log")
    sdk: subprocess.Popen[bytes] | None = None
    try:
        sdk = common.start_process(
            [sys.executable, "-m", "hypercorn", "--bind", f"{HOST}:{SDK_PORT}",
             "--log-level", "WARNING", "bench.peers.restate_service:app"],
            work / "sdk.log", cwd=REPO)
        register(server, sdk, work, say)
        meter = common.CpuMeter({"restate-server": server.pid, "restate-sdk": sdk.pid})
        latencies, outcomes, wall_s = asyncio.run(drive(sagas, concurrency, meter, say))
    finally:
        if sdk is not None:
            common.stop_process(sdk)
        common.stop_process(server)
    spent = meter.spent
    return common.PeerResult(
        system="restate", version=version, sagas=sagas, concurrency=concurrency,
        wall_s=round(wall_s, 3), sagas_per_s=round(sagas / wall_s, 1),
        latency_ms=common.latency_summary(latencies),
        cpu_s_per_saga=round(sum(spent.values()) / sagas, 6), cpu_by_process=spent,
        persists=persists, fsync=fsync, outcomes=outcomes)


def main() -> None:
    parser = argparse.ArgumentParser(description="The order saga on Restate.")
    parser.add_argument("--sagas", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--work", type=Path, default=Path("/tmp/peer-restate"))
    # Set by this driver when it re-runs itself inside the network namespace.
    parser.add_argument("--in-namespace", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    if not args.in_namespace:
        server_binary(say)  # npm needs the registry: before the namespace cuts it off
        argv = [sys.executable, "-m", "bench.peers.restate_peer", "--sagas", str(args.sagas),
                "--concurrency", str(args.concurrency), "--work", str(args.work.resolve()),
                "--in-namespace"]
        command = [*unshare_prefix(), *argv]
        # exec, not a child: the caller's PID (and its timeout's kill) is the driver's.
        os.execv(command[0], command)
    loopback_up()
    result = run(args.sagas, args.concurrency, args.work, say)
    print(json.dumps(result.to_json()))


if __name__ == "__main__":
    main()
