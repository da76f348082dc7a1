# dbos is only in .venv-peers: to the main venv's mypy its decorators are Any.
# mypy: disable-error-code="untyped-decorator"
"""The order saga on DBOS Transact: the library inside this process, its system database
on SQLite (a file under the work dir) or on a throwaway PostgreSQL server (Debian's
binaries, 127.0.0.1:15432, a data dir under the work dir), the client that drives the
load in the same process.

    python -m bench.peers.dbos_peer --database sqlite --sagas 200 --concurrency 50 \
        --work /tmp/peer-dbos-sqlite
    python -m bench.peers.dbos_peer --database postgres --sagas 200 --concurrency 50 \
        --work /tmp/peer-dbos-postgres

The workflow and its steps are async: they run on this process's event loop, and DBOS
hands its database writes to its own thread pool, so 100 sagas in flight need no thread
each. Both databases keep their durable defaults: Postgres runs with fsync=on and
synchronous_commit=on (checked, and the run refuses anything else); DBOS sets no
journal_mode or synchronous pragma on SQLite, so SQLite's defaults hold (read back from
the file after the run).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pwd
import shutil
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from dbos import DBOS, DBOSConfig, SetWorkflowID

from bench.peers import common

APP_NAME = "order-saga-peer-bench"
PG_PORT = 15432
PG_HOST = "127.0.0.1"
PG_SUPERUSER = "postgres"
PG_DATABASE = "dbos_bench"  # DBOS creates it on launch
PG_USER = "postgres"  # the unprivileged OS user postgres runs as when we are root
PG_READY_TIMEOUT_S = 60.0
#: Longer than any saga should take under load: a recv that times out returns None,
#: which the workflow turns into a failure rather than a silent "completed".
RECV_TIMEOUT_S = 120.0
SQLITE_SYNCHRONOUS = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}


# ---- the steps: common's functions, recorded by DBOS ---------------------------------
# No step allows retries (DBOS's default, retries_allowed=False, spelt out here): out of
# stock is an answer, not an outage, so it is recorded once and raised to the workflow.
@DBOS.step(name="charge", retries_allowed=False)
async def charge(order: dict[str, Any]) -> dict[str, Any]:
    return common.charge(order)


@DBOS.step(name="refund", retries_allowed=False)
async def refund(order: dict[str, Any]) -> dict[str, Any]:
    return common.refund(order)


@DBOS.step(name="reserve", retries_allowed=False)
async def reserve(order: dict[str, Any]) -> dict[str, Any]:
    return common.reserve(order)


@DBOS.step(name="schedule_shipment", retries_allowed=False)
async def schedule_shipment(order: dict[str, Any]) -> dict[str, Any]:
    return common.schedule_shipment(order)


@DBOS.step(name="send_confirmation", retries_allowed=False)
async def send_confirmation(order_id: str, tracking: dict[str, Any]) -> dict[str, Any]:
    return common.send_confirmation(order_id, tracking)


# ---- the workflow --------------------------------------------------------------------
@DBOS.workflow(name="order_saga")
async def order_saga(order: dict[str, Any]) -> dict[str, Any]:
    await charge(order)
    try:
        await reserve(order)
    except common.OutOfStock:
        await refund(order)
        return {"status": "cancelled", "reason": "out_of_stock"}
    # The signal is usually in the notifications table already (the client sends it
    # right after the start); recv then consumes it without waiting.
    picked = await DBOS.recv_async(common.SIGNAL, timeout_seconds=RECV_TIMEOUT_S)
    if picked is None:
        raise TimeoutError(f"{order['id']}: no {common.SIGNAL} within {RECV_TIMEOUT_S}s")
    tracking = await schedule_shipment(order)
    await send_confirmation(order["id"], tracking)
    return {"status": "completed", "tracking": tracking["id"]}


# ---- the load ------------------------------------------------------------------------
async def one(n: int) -> str:
    workflow_id = f"order-{n}"
    with SetWorkflowID(workflow_id):
        handle = await DBOS.start_workflow_async(order_saga, common.order_input(workflow_id, n))
    # A cancelled saga never reads it, and may have ended already: DBOS still accepts a
    # message for a workflow that exists, so no error to tolerate here.
    await DBOS.send_async(workflow_id, "picked", common.SIGNAL)
    result = await handle.get_result()
    return str(result["status"])


def drive(sagas: int, concurrency: int, url: str, meter: common.CpuMeter,
          say: Callable[[str], None]) -> tuple[list[float], dict[str, int], float]:
    config: DBOSConfig = {"name": APP_NAME, "system_database_url": url,
                          # Per-saga INFO lines would be I/O and CPU the others don't pay.
                          "log_level": "WARNING"}
    DBOS(config=config)
    try:
        DBOS.launch()
        say(f"dbos: launched on {url}; {sagas} sagas, {concurrency} in flight")

        async def load() -> tuple[list[float], dict[str, int], float]:
            await common.warm_up(concurrency, one)
            meter.start()
            try:
                return await common.keep_in_flight(sagas, concurrency, one)
            finally:
                meter.stop()

        return asyncio.run(load())
    finally:
        DBOS.destroy()


def result(database: str, version: str, sagas: int, concurrency: int,
           latencies: list[float], outcomes: dict[str, int], wall_s: float,
           spent: dict[str, float], persists: str, fsync: str) -> common.PeerResult:
    return common.PeerResult(
        system=f"dbos-{database}", version=version, sagas=sagas, concurrency=concurrency,
        wall_s=round(wall_s, 3), sagas_per_s=round(sagas / wall_s, 1),
        latency_ms=common.latency_summary(latencies),
        cpu_s_per_saga=round(sum(spent.values()) / sagas, 6), cpu_by_process=spent,
        persists=persists, fsync=fsync, outcomes=outcomes)


# ---- SQLite --------------------------------------------------------------------------
def sqlite_durability(db: Path) -> str:
    """journal_mode and synchronous as DBOS's own connections see them: DBOS 3.4 sets
    only busy_timeout and foreign_keys, so a fresh connection to the same file through
    the same SQLite library sees the same values (journal_mode is stored in the file
    only once it is WAL)."""
    with sqlite3.connect(db) as conn:
        journal = str(conn.execute("PRAGMA journal_mode").fetchone()[0])
        level = int(conn.execute("PRAGMA synchronous").fetchone()[0])
    conn.close()
    sync = SQLITE_SYNCHRONOUS.get(level, str(level))
    waits = ("each commit waits for fsync" if level >= 2 or (level == 1 and journal != "wal")
             else "commits do not wait for fsync")
    return (f"SQLite defaults, DBOS sets neither: journal_mode={journal}, "
            f"synchronous={sync} ({waits})")


def run_sqlite(sagas: int, concurrency: int, work: Path, say: Callable[[str], None]
               ) -> common.PeerResult:
    db = work / "dbos-system.sqlite"
    # A database left by an earlier run would make this run start on a bigger file.
    for stale in (db, *(db.with_name(db.name + s) for s in ("-journal", "-wal", "-shm"))):
        stale.unlink(missing_ok=True)
    version = f"dbos {metadata.version('dbos')}, SQLite {sqlite3.sqlite_version}"
    say(f"dbos-sqlite: {version}, system database {db}")
    meter = common.CpuMeter({})
    latencies, outcomes, wall_s = drive(sagas, concurrency, f"sqlite:///{db}", meter, say)
    return result("sqlite", version, sagas, concurrency, latencies, outcomes, wall_s,
                  meter.spent,
                  persists="workflow status, input and output, each step's output (or "
                           "error), the signal (notifications) and recv's result, in "
                           f"DBOS's system database: a SQLite file ({db.name})",
                  fsync=sqlite_durability(db))


# ---- PostgreSQL ----------------------------------------------------------------------
def postgres_bin(say: Callable[[str], None]) -> Path:
    """Debian's newest PostgreSQL binaries; installs the `postgresql` package when they
    are missing and we are root, else says what to run."""

    def found() -> Path | None:
        candidates = [d for d in Path("/usr/lib/postgresql").glob("*/bin")
                      if (d / "postgres").is_file() and (d / "initdb").is_file()]
        numbered = [d for d in candidates if d.parent.name.isdigit()]
        return max(numbered, key=lambda d: int(d.parent.name), default=None)

    bin_dir = found()
    if bin_dir is not None:
        return bin_dir
    if os.geteuid() != 0:
        raise RuntimeError("no PostgreSQL server under /usr/lib/postgresql/*/bin: run "
                           "`sudo apt-get update && sudo apt-get install -y postgresql`")
    say("dbos-postgres: no PostgreSQL binaries; apt-get install -y postgresql")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update"], check=True, env=env, stdout=sys.stderr)
    subprocess.run(["apt-get", "install", "-y", "postgresql"], check=True, env=env,
                   stdout=sys.stderr)
    bin_dir = found()
    if bin_dir is None:
        raise RuntimeError("apt-get install postgresql left no server under "
                           "/usr/lib/postgresql/*/bin")
    return bin_dir


def as_server_user() -> tuple[list[str], int | None]:
    """The command prefix that runs initdb and postgres (both refuse root), and that
    user's uid when it is not us."""
    if os.geteuid() != 0:
        return [], None
    try:
        uid = pwd.getpwnam(PG_USER).pw_uid
    except KeyError:
        raise RuntimeError(f"running as root, but there is no `{PG_USER}` user to run "
                           "PostgreSQL as (apt-get install -y postgresql creates it)") from None
    return ["runuser", "-u", PG_USER, "--"], uid


def let_traverse(path: Path, uid: int, say: Callable[[str], None]) -> None:
    """Add o+x to the ancestors of ``path`` that ``uid`` cannot enter (a mkdtemp folder
    is 0700): search only, no listing, so that user can reach its data dir."""
    user = pwd.getpwuid(uid)
    groups = {user.pw_gid} | {g for g in os.getgrouplist(user.pw_name, user.pw_gid)}
    for folder in reversed(path.parents):
        info = folder.stat()
        if info.st_uid == uid:
            ok = bool(info.st_mode & stat.S_IXUSR)
        elif info.st_gid in groups:
            ok = bool(info.st_mode & stat.S_IXGRP)
        else:
            ok = bool(info.st_mode & stat.S_IXOTH)
        if not ok:
            say(f"dbos-postgres: chmod o+x {folder} so {user.pw_name} can reach its data")
            folder.chmod(info.st_mode | stat.S_IXOTH)


def initdb(bin_dir: Path, data: Path, say: Callable[[str], None]) -> list[str]:
    prefix, uid = as_server_user()
    # A cluster left by an earlier run would make this run start on a bigger database.
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(mode=0o700, parents=True)
    if uid is not None:
        os.chown(data, uid, pwd.getpwuid(uid).pw_gid)
        let_traverse(data, uid, say)
    # trust on a throwaway cluster that listens on 127.0.0.1 only; durability settings
    # are left at initdb's defaults (fsync=on, synchronous_commit=on).
    subprocess.run([*prefix, str(bin_dir / "initdb"), "-D", str(data), "-U", PG_SUPERUSER,
                    "--auth=trust", "--encoding=UTF8", "--no-instructions"],
                   check=True, stdout=sys.stderr, stderr=sys.stderr)
    return prefix


def pg_settings(server: subprocess.Popen[bytes], log: Path) -> dict[str, str]:
    """The server's settings that the result reports, once it accepts connections."""
    import psycopg  # type: ignore[import-not-found]  # a dbos dependency, in .venv-peers

    conninfo = (f"host={PG_HOST} port={PG_PORT} user={PG_SUPERUSER} dbname=postgres "
                "connect_timeout=2")

    def ready() -> bool:
        if server.poll() is not None:
            raise RuntimeError(f"postgres exited ({server.returncode}); see {log}")
        try:
            psycopg.connect(conninfo).close()
        except psycopg.OperationalError:  # refused, or "starting up", while it starts
            return False
        return True

    common.wait_until(ready, PG_READY_TIMEOUT_S, "postgres accepting connections")
    with psycopg.connect(conninfo) as conn:
        return {name: str(conn.execute(f"SHOW {name}").fetchone()[0])
                for name in ("server_version", "fsync", "synchronous_commit",
                             "wal_sync_method", "full_page_writes")}


def run_postgres(sagas: int, concurrency: int, work: Path, say: Callable[[str], None]
                 ) -> common.PeerResult:
    bin_dir = postgres_bin(say)
    data = work / "pgdata"
    log = work / "postgres.log"
    say(f"dbos-postgres: initdb {data} ({bin_dir})")
    prefix = initdb(bin_dir, data, say)
    # Unix sockets off: TCP on loopback only, and no clash with a system cluster's
    # /var/run/postgresql.
    server = common.start_process(
        [*prefix, str(bin_dir / "postgres"), "-D", str(data), "-p", str(PG_PORT),
         "-c", f"listen_addresses={PG_HOST}", "-c", "unix_socket_directories="], log)
    try:
        settings = pg_settings(server, log)
        if settings["fsync"] != "on" or settings["synchronous_commit"] != "on":
            raise RuntimeError(f"postgres is not durable ({settings}): the benchmark "
                               "compares durable configurations only")
        server_version = settings["server_version"].split()[0]
        version = f"dbos {metadata.version('dbos')}, PostgreSQL {server_version}"
        say(f"dbos-postgres: {version} on {PG_HOST}:{PG_PORT}, pid {server.pid}, log {log}")
        meter = common.CpuMeter({"postgres": server.pid})
        url = f"postgresql://{PG_SUPERUSER}@{PG_HOST}:{PG_PORT}/{PG_DATABASE}"
        latencies, outcomes, wall_s = drive(sagas, concurrency, url, meter, say)
    finally:
        common.stop_process(server)
    return result("postgres", version, sagas, concurrency, latencies, outcomes, wall_s,
                  meter.spent,
                  persists="workflow status, input and output, each step's output (or "
                           "error), the signal (notifications) and recv's result, in "
                           f"DBOS's system database on PostgreSQL ({PG_DATABASE} on "
                           "loopback)",
                  fsync=f"fsync={settings['fsync']}, synchronous_commit="
                        f"{settings['synchronous_commit']} (defaults; wal_sync_method="
                        f"{settings['wal_sync_method']}): each commit waits for its WAL "
                        "flush")


def run(sagas: int, concurrency: int, work: Path, say: Callable[[str], None], *,
        database: str) -> common.PeerResult:
    work.mkdir(parents=True, exist_ok=True)
    if database == "sqlite":
        return run_sqlite(sagas, concurrency, work, say)
    if database == "postgres":
        return run_postgres(sagas, concurrency, work, say)
    raise ValueError(f"database is sqlite or postgres, not {database!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description="The order saga on DBOS Transact.")
    parser.add_argument("--database", choices=["sqlite", "postgres"], required=True)
    parser.add_argument("--sagas", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--work", type=Path, default=None,
                        help="default /tmp/peer-dbos-<database>")
    args = parser.parse_args()
    work = args.work or Path(f"/tmp/peer-dbos-{args.database}")
    peer = run(args.sagas, args.concurrency, work,
               lambda line: print(line, file=sys.stderr, flush=True), database=args.database)
    print(json.dumps(peer.to_json()))


if __name__ == "__main__":
    main()
