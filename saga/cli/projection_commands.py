"""`saga rebuild|checksum|verify-replay`: proving the projection is a cache of the
journal (invariant 4) and the journal replays on the code about to be deployed."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from saga.cli.common import bootstrapped, load_workflows
from saga.cli.output import emit_json, table
from saga.config import Settings
from saga.coordinator.recovery import fold_journal, rebuild_projection
from saga.engine.replay import fold_history, journal_line, read_dump, verify_replay
from saga.errors import ConfigError
from saga.kafka.clients import partitions_of
from saga.kafka.partitioner import partition_of
from saga.store.local_projections import LocalProjections
from saga.store.projection import checksum, checksum_stored, partition_report


def register(commands: Any) -> None:
    rebuild = commands.add_parser("rebuild", help="replay saga.journal into a fresh "
                                  "projection; print its checksum")
    rebuild.add_argument("--into", type=Path, help="folder for the rebuilt projection "
                         "(default: a temporary one, removed afterwards)")
    rebuild.add_argument("--by-partition", action="store_true",
                         help="also a checksum per partition, to compare with `saga checksum "
                         "--by-partition` on each instance")
    rebuild.add_argument("--workers", type=int, help="processes that fold the journal, each "
                         "a share of the partitions (default SAGA_REBUILD_WORKERS: one per "
                         "CPU core for a long journal)")
    rebuild.add_argument("--json", action="store_true")
    rebuild.set_defaults(handler=saga_rebuild)
    check = commands.add_parser("checksum", help="checksum of the live projection")
    check.add_argument("--instance", help="only this coordinator instance's projection "
                       "(default: every instance under the state folder, merged)")
    check.add_argument("--by-partition", action="store_true",
                       help="also per instance and partition, with the journal offset each "
                       "instance has read to (asks Kafka for the partition count)")
    check.add_argument("--json", action="store_true")
    check.set_defaults(handler=saga_checksum)
    verify = commands.add_parser("verify-replay", help="replay every stored history against "
                                 "the current code; exit 1 if any would diverge")
    verify.add_argument("--workflows", help="modules to import (env SAGA_WORKFLOWS; "
                        "default: the examples, order, subscription and bulk_order)")
    verify.add_argument("--dump", type=Path, metavar="FILE", help="also write every "
                        "history read to FILE, one journal record per line (JSON), for "
                        "`saga verify-replay --from` and saga.testing's load_journal")
    verify.add_argument("--from", dest="source", type=Path, metavar="FILE",
                        help="replay the histories of a dump (--dump) instead of reading "
                        "saga.journal: no Kafka needed")
    verify.add_argument("--json", action="store_true")
    verify.set_defaults(handler=saga_verify_replay)


def live_checksum(settings: Settings) -> tuple[str, int]:
    projections = LocalProjections(settings)
    try:
        return checksum(projections.states())
    finally:
        projections.close()


def saga_checksum(args: argparse.Namespace, settings: Settings) -> int:
    projections = LocalProjections(settings, args.instance)
    try:
        digest, count = checksum(projections.states())
        instances: dict[str, dict[str, Any]] = {}
        if args.by_partition:
            settings = bootstrapped(settings)
            partitions = len(partitions_of(settings.kafka,
                                           settings.topic("saga.journal")))
        for name, projection in projections.instances.items():
            own_digest, own_count = checksum_stored(projection.stored_states())
            instances[name] = {"checksum": own_digest, "sagas": own_count}
            if args.by_partition:
                instances[name]["partitions"] = partition_report(
                    projection, lambda saga_id: partition_of(saga_id, partitions))
        result: dict[str, Any] = {"checksum": digest, "sagas": count, "instances": instances}
    finally:
        projections.close()
    if args.json:
        emit_json(result)
        return 0
    print(f"{digest}  ({count} sagas)")
    if args.by_partition:
        print(table(["instance", "partition", "sagas", "journal offset", "checksum"],
                    [[name, p, row["sagas"], row["journal_offset"], row["checksum"][:16]]
                     for name, instance in instances.items()
                     for p, row in instance["partitions"].items()]))
    return 0


def _progress_line(label: str) -> Any:
    """A progress reporter: redraws one line on a terminal, a line a second elsewhere."""
    last = [0.0]
    tty = sys.stderr.isatty()

    def report(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] >= (0.2 if tty else 1.0) or done == total:
            last[0] = now
            share = f" ({100 * done // total}%)" if total else ""
            line = f"{label}: {done}/{total} journal records{share}"
            print(f"\r{line}" if tty else line, end="" if tty and done != total else "\n",
                  file=sys.stderr, flush=True)

    return report


def saga_rebuild(args: argparse.Namespace, settings: Settings) -> int:
    began = time.monotonic()
    if args.workers is not None and args.workers < 0:
        raise ConfigError(f"--workers must be >= 0, got {args.workers}",
                          hint="give a number of processes, or 0 for one per CPU core")
    if args.into is not None:
        result = rebuild_projection(bootstrapped(settings), args.into, workers=args.workers,
                                    on_progress=_progress_line("rebuild"))
    else:
        with tempfile.TemporaryDirectory(prefix="saga-rebuild-") as tmp:
            result = rebuild_projection(bootstrapped(settings), Path(tmp) / "projection",
                                        workers=args.workers,
                                        on_progress=_progress_line("rebuild"))
    if not args.by_partition:
        del result["partitions"]
    seconds = time.monotonic() - began
    result["seconds"] = round(seconds, 3)
    if args.json:
        emit_json(result)
        return 0
    print(f"{result['checksum']}  ({result['sagas']} sagas, {result['events']} events in "
          f"{seconds:.1f}s, {result['workers']} process{'es' if result['workers'] > 1 else ''})")
    if args.by_partition:
        print(table(["partition", "sagas", "journal offset", "checksum"],
                    [[p, row["sagas"], row["journal_offset"], row["checksum"][:16]]
                     for p, row in result["partitions"].items()]))
    return 0


def saga_verify_replay(args: argparse.Namespace, settings: Settings) -> int:
    if args.source is not None:
        if args.dump is not None:
            raise ConfigError("--dump writes what saga.journal holds; --from reads a dump "
                              "instead of it", hint="use one of them")
        registry = load_workflows(args.workflows, settings)
        try:
            with args.source.open("rb") as dump:
                states = [fold_history(saga_id, entries)
                          for saga_id, entries in read_dump(dump).items()]
        except OSError as exc:
            raise ConfigError(f"cannot read {args.source}: {exc}",
                              hint="name a file written by `saga verify-replay --dump`") from exc
    else:
        settings = bootstrapped(settings)
        registry = load_workflows(args.workflows, settings)
        if args.dump is not None:
            with args.dump.open("wb") as dump:
                states = list(fold_journal(
                    settings, lambda entry: dump.write(journal_line(entry) + b"\n")).values())
        else:
            states = list(fold_journal(settings).values())
    report = verify_replay(registry, states)
    if args.json:
        emit_json(report.to_json())
    else:
        print(report)
    return 0 if report.ok else 1
