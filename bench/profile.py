"""`make profile`: where each input's time goes, as py-spy flame graphs.

Three scenarios on the embedded broker (or ``SAGA_BOOTSTRAP_SERVERS``), each with py-spy
on the real processes while they work:

* coordinator  order sagas whose every input (start, replies, the pick) is in the inbox
               before the coordinator starts: the coordinator is the only moving part
* rebuild      `saga rebuild --workers 1` of that scenario's journal: what folding one
               entry costs (each worker of a parallel rebuild folds its share alike)
* end to end   order sagas through the coordinator and the five service processes; the
               payments service is profiled beside the coordinator

Writes ``<out>/<label>-coordinator.svg``, ``<out>/<label>-rebuild.svg``,
``<out>/<label>-e2e-coordinator.svg``, ``<out>/<label>-e2e-payments.svg`` and
``<out>/<label>.md``: the functions that hold the most samples (own and inclusive), and
the CPU seconds each process spent per saga.
py-spy is in the ``dev`` extra; it samples another process, so it needs ptrace (root, or
``kernel.yama.ptrace_scope=0``).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench.run import (
    STOCK,
    delete_made_topics,
    fresh_settings,
    say,
    send_orders,
    send_pregenerated,
)
from bench.watch import JournalWatcher, process_cpu_s
from saga.config import Settings
from saga.dev.embedded import EmbeddedKafka
from saga.dev.stack import Stack

DOCS = Path(__file__).parent.parent / "docs" / "profiles"


def _py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(found).exists():
        raise SystemExit("py-spy is not installed: `pip install -e '.[dev]'` (or `pip install "
                         "py-spy`), then run this again")
    return found


def coordinator_scenario(settings: Settings, sagas: int, out: Path, label: str
                         ) -> dict[str, float]:
    stack = Stack(settings, stock=STOCK)
    ids = [f"k-{n:06d}" for n in range(sagas)]
    send_pregenerated(stack, ids)
    watcher = JournalWatcher(settings)
    process = stack.start(stack.add_coordinator("profile").name)
    try:
        watcher.wait_started(ids[:1], 120)
        assert process.popen is not None
        pid = process.popen.pid
        began_cpu, began = process_cpu_s(pid), time.monotonic()
        spy = _spy(pid, out / f"{label}-coordinator", 10)
        watcher.wait_ended(ids, 600, say)
        cpu = process_cpu_s(pid) - began_cpu
        wall = time.monotonic() - began
        spy.join()
    finally:
        stack.stop_all()
        watcher.close()
    return {"sagas_per_s": round(len(ids) / wall, 1),
            "coordinator_cpu_us_per_saga": round(cpu / len(ids) * 1e6)}


def rebuild_scenario(settings: Settings, out: Path, label: str) -> dict[str, float]:
    """`saga rebuild --workers 1` of ``settings``' journal, started under py-spy: once
    for the flame graph, once for the stacks the summary counts."""
    env = {**os.environ, **settings.child_env(),
           "SAGA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
           "SAGA_TOPIC_PREFIX": settings.topic_prefix, "SAGA_STATE_DIR": str(settings.state_dir),
           "SAGA_PARTITIONS": str(settings.partitions)}
    answer: dict[str, float] = {}
    for fmt, ext in (("flamegraph", "svg"), ("raw", "txt")):
        done = subprocess.run(
            [_py_spy(), "record", "--rate", "200", "--format", fmt,
             "-o", str(out / f"{label}-rebuild.{ext}"), "--", sys.executable, "-m",
             "saga.cli.main", "rebuild", "--workers", "1", "--json"],
            env=env, capture_output=True, text=True, check=True)
        # py-spy writes lines of its own after the command's JSON
        rebuilt, _ = json.JSONDecoder().raw_decode(done.stdout[done.stdout.index("{"):])
        answer = {"events": rebuilt["events"], "seconds": rebuilt["seconds"],
                  "events_per_s": round(rebuilt["events"] / rebuilt["seconds"], 1)}
    return answer


def end_to_end_scenario(base: Settings, sagas: int, out: Path, label: str
                        ) -> dict[str, float]:
    settings = fresh_settings(base, "profile-e2e")
    stack = Stack(settings, stock=STOCK)
    stack.start_all(coordinators=["profile"])
    watcher = JournalWatcher(settings)
    try:
        time.sleep(5)  # every service has its partitions
        pids = {name: p.popen.pid for name, p in stack.processes.items() if p.popen}
        cpu_before = {name: process_cpu_s(pid) for name, pid in pids.items()}
        began = time.monotonic()
        spies = [_spy(pids["coordinator-profile"], out / f"{label}-e2e-coordinator", 8),
                 _spy(pids["service-payments"], out / f"{label}-e2e-payments", 8)]
        ids = send_orders(stack, sagas, "e")
        watcher.wait_ended(ids, 900, say)
        wall = time.monotonic() - began
        cpu = {name: process_cpu_s(pid) - cpu_before[name] for name, pid in pids.items()}
        for spy in spies:
            spy.join()
    finally:
        stack.stop_all()
        watcher.close()
    return {"sagas_per_s": round(len(ids) / wall, 1),
            **{f"{name}_cpu_us_per_saga": round(seconds / len(ids) * 1e6)
               for name, seconds in sorted(cpu.items())}}


def _spy(pid: int, stem: Path, seconds: float) -> threading.Thread:
    """py-spy on ``pid`` for ``seconds``: ``stem``.svg (a flame graph) and ``stem``.txt
    (the collapsed stacks, for the summary), two samplers side by side."""
    def record(fmt: str, target: str) -> None:
        subprocess.run([_py_spy(), "record", "--pid", str(pid), "--rate", "200",
                        "--duration", str(int(seconds)), "--nonblocking", "--format", fmt,
                        "-o", target],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)

    def run() -> None:
        both = [threading.Thread(target=record, args=(fmt, f"{stem}.{ext}"))
                for fmt, ext in (("flamegraph", "svg"), ("raw", "txt"))]
        for thread in both:
            thread.start()
        for thread in both:
            thread.join()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


_SHORT = re.compile(r" \(/[^ ]*?/(site-packages|saga|lib/python3\.\d+)/")


def _frame(frame: str) -> str:
    return re.sub(r":\d+\)$", ")", _SHORT.sub(r" (\1/", frame))


def summarise(raw: Path, top: int = 25) -> list[str]:
    """The functions with the most samples in py-spy's collapsed stacks."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        samples = int(count)
        frames = [_frame(f) for f in stack.split(";")]
        total += samples
        for frame in set(frames):
            inclusive[frame] += samples
        own[frames[-1]] += samples
    lines = [f"{total} samples", "", "| inclusive | own | function |", "|---|---|---|"]
    for frame, samples in inclusive.most_common(top):
        lines.append(f"| {100 * samples / total:.1f}% | {100 * own[frame] / total:.1f}% | "
                     f"`{frame}` |")
    # Where the time is spent rather than passed through: what a change would have to cut.
    lines += ["", "Most samples in the function itself:", "", "| own | inclusive | function |",
              "|---|---|---|"]
    for frame, samples in own.most_common(top):
        lines.append(f"| {100 * samples / total:.1f}% | {100 * inclusive[frame] / total:.1f}% | "
                     f"`{frame}` |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="profile", description=__doc__)
    parser.add_argument("--label", default="after", help="file name prefix (before/after)")
    parser.add_argument("--sagas", type=int, default=6000)
    parser.add_argument("--out", type=Path, default=DOCS)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    base = Settings.from_env()
    if not base.bootstrap_servers:
        state = EmbeddedKafka(base.state_dir, base_port=base.kafka_port, progress=say).start(1)
        base = base.with_(bootstrap_servers=state.bootstrap_servers)
    say(f"profile: coordinator alone, {args.sagas} sagas, replies written ahead")
    alone_settings = fresh_settings(base, "profile-coordinator")
    alone = coordinator_scenario(alone_settings, args.sagas, args.out, args.label)
    say(f"  {alone}")
    say("profile: saga rebuild of that journal, in one process")
    rebuilt = rebuild_scenario(alone_settings, args.out, args.label)
    say(f"  {rebuilt}")
    say(f"profile: end to end, {args.sagas // 2} sagas, five service processes")
    e2e = end_to_end_scenario(base, args.sagas // 2, args.out, args.label)
    say(f"  {e2e}")
    report = [f"# Profile `{args.label}` (`make profile`, commit {_commit()})", "",
              f"Coordinator alone: {alone}", "", f"Rebuild (one process): {rebuilt}", "",
              f"End to end: {e2e}", ""]
    for stem in ("coordinator", "rebuild", "e2e-coordinator", "e2e-payments"):
        raw = args.out / f"{args.label}-{stem}.txt"
        if raw.exists():
            report += [f"## {stem}", "", *summarise(raw), ""]
            raw.unlink()
    (args.out / f"{args.label}.md").write_text("\n".join(report))
    print("\n".join(report))
    return 0


def _commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, check=False, cwd=Path(__file__).parent)
    return done.stdout.strip() or "unknown"


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    try:
        code = main(sys.argv[1:])
    finally:
        delete_made_topics()
    sys.exit(code)
