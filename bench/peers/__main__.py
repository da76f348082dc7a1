"""`make bench-peers`: the same order saga on each system's real server, in one run.

Each system runs in a process of its own (``python -m bench.peers.<driver>``), one
after the other on the same idle machine, with the same number of sagas and the same
number kept in flight (bench/peers/common.py says what the saga does and how the load
is made). Every server is started for its run and stopped by PID after it.

Writes bench/results/peers-<UTC time>.json, bench/results/peers-latest.md (the table)
and bench/results/peers-latest.png (the chart).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parents[1] / "results"
#: system -> (driver module, its extra arguments).
SYSTEMS: dict[str, tuple[str, list[str]]] = {
    "temporal": ("bench.peers.temporal_peer", []),
    "dbos-sqlite": ("bench.peers.dbos_peer", ["--database", "sqlite"]),
    "dbos-postgres": ("bench.peers.dbos_peer", ["--database", "postgres"]),
    "restate": ("bench.peers.restate_peer", []),
    "kafka-saga": ("bench.peers.kafka_saga_peer", []),
}
OURS = "kafka-saga"


def say(line: str) -> None:
    print(f"[bench-peers] {line}", file=sys.stderr, flush=True)


def run_one(system: str, sagas: int, concurrency: int, work: Path, timeout_s: float
            ) -> dict[str, Any]:
    module, extra = SYSTEMS[system]
    folder = work / system
    folder.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", module, "--sagas", str(sagas), "--concurrency",
            str(concurrency), "--work", str(folder), *extra]
    say(f"{system}: {shlex.join(argv[1:])}")
    began = time.monotonic()
    try:
        done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=None, timeout=timeout_s,
                              check=False, cwd=Path(__file__).resolve().parents[2])
    except subprocess.TimeoutExpired:
        return {"system": system, "error": f"did not finish within {timeout_s:.0f} s"}
    lines = done.stdout.decode().strip().splitlines()
    if done.returncode != 0 or not lines:
        return {"system": system, "error": f"exited {done.returncode} after "
                f"{time.monotonic() - began:.0f} s (its output is above)"}
    result: dict[str, Any] = json.loads(lines[-1])
    say(f"  {result['sagas_per_s']} sagas/s, p50 {result['latency_ms']['p50']} ms, "
        f"p99 {result['latency_ms']['p99']} ms, {result['cpu_s_per_saga'] * 1000:.1f} ms "
        "CPU/saga")
    return result


def table(results: list[dict[str, Any]]) -> str:
    measured = [r for r in results if "error" not in r]
    peers = [r for r in measured if r["system"] != OURS]
    best = max(peers, key=lambda r: r["sagas_per_s"], default=None)
    rows = ["| system | sagas/s | x best peer | p50 ms | p99 ms | CPU ms/saga | persists | "
            "fsync per step | version |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        if "error" in r:
            rows.append(f"| {r['system']} | failed: {r['error']} | | | | | | | |")
            continue
        ratio = f"{r['sagas_per_s'] / best['sagas_per_s']:.1f}x" if best else "-"
        rows.append(f"| {r['system']} | {r['sagas_per_s']:.1f} | {ratio} | "
                    f"{r['latency_ms']['p50']:.0f} | {r['latency_ms']['p99']:.0f} | "
                    f"{r['cpu_s_per_saga'] * 1000:.1f} | {r['persists']} | {r['fsync']} | "
                    f"{r['version']} |")
    return "\n".join(rows)


def chart(results: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display here, and none needed
    from matplotlib import pyplot

    measured = [r for r in results if "error" not in r]
    names = [r["system"] for r in measured]
    colours = ["#d62728" if n == OURS else "#1f77b4" for n in names]
    figure, (rate, latency) = pyplot.subplots(1, 2, figsize=(11, 4.2))
    rate.bar(names, [r["sagas_per_s"] for r in measured], color=colours)
    rate.set_ylabel("order sagas/s (higher is better)")
    rate.set_title("throughput")
    width = 0.4
    xs = range(len(measured))
    latency.bar([x - width / 2 for x in xs], [r["latency_ms"]["p50"] for r in measured],
                width, label="p50", color="#7f7f7f")
    latency.bar([x + width / 2 for x in xs], [r["latency_ms"]["p99"] for r in measured],
                width, label="p99", color=colours)
    latency.set_xticks(list(xs), names)
    latency.set_yscale("log")
    latency.set_ylabel("end-to-end latency, ms (log; lower is better)")
    latency.set_title("latency per saga")
    latency.legend()
    for axis in (rate, latency):
        axis.tick_params(axis="x", labelrotation=20)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    pyplot.close(figure)


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench-peers", description=__doc__)
    parser.add_argument("--sagas", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--systems", default=",".join(SYSTEMS),
                        help=f"comma-separated, of {', '.join(SYSTEMS)}")
    parser.add_argument("--timeout", type=float, default=900,
                        help="seconds one system may take, start-up included")
    args = parser.parse_args(argv)
    chosen = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in SYSTEMS]
    if unknown:
        parser.error(f"unknown systems {unknown}; choose among {', '.join(SYSTEMS)}")
    work = Path(tempfile.mkdtemp(prefix="saga-bench-peers-"))
    command = "make bench-peers" + (f" PEERS_ARGS={shlex.quote(shlex.join(argv))}"
                                    if argv else "")
    say(f"{len(chosen)} systems, {args.sagas} sagas each, {args.concurrency} in flight; "
        f"work under {work}")
    results = [run_one(system, args.sagas, args.concurrency, work, args.timeout)
               for system in chosen]
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    RESULTS.mkdir(exist_ok=True)
    record = {"when": stamp, "commit": _commit(), "command": command,
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                          "python": platform.python_version()},
              "sagas": args.sagas, "concurrency": args.concurrency, "results": results}
    (RESULTS / f"peers-{stamp}.json").write_text(json.dumps(record, indent=2) + "\n")
    title = (f"order saga, N={args.sagas}, {args.concurrency} in flight, "
             f"{os.cpu_count()} cores, commit {record['commit']} ({stamp})")
    (RESULTS / "peers-latest.md").write_text(
        f"# Peers, {stamp} (commit {record['commit']})\n\n`{command}`: {title}\n\n"
        f"{table(results)}\n\n![chart](peers-latest.png)\n")
    chart(results, RESULTS / "peers-latest.png", title)
    say(f"wrote bench/results/peers-{stamp}.json, peers-latest.md and peers-latest.png")
    print(table(results))
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
