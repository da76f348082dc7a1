"""`make bench-smoke`: the speed regression guard that `make test` (and so CI) runs.

One run, on one broker, measures the bare transactional consume->produce loop (the
ceiling of any Kafka stream processor in Python here) and then order sagas end to end
with the five real service processes. The figure kept is their ratio, end-to-end inputs
per second over the loop's: a ratio holds across machines and loads where an absolute
rate or time would not. The guard fails when the ratio falls below half the reference
in bench/smoke_reference.json, so a change that halves the engine's speed relative to
Kafka itself cannot land unnoticed.

    python -m bench.smoke                    # check against the reference
    python -m bench.smoke --set-reference    # measure and keep a new reference (commit it)

The loop's rate is the noisy half of the ratio (a fresh broker's JVM warms up over
the run): a first loop is run and not counted, and the baseline is the median of three
loops after the end-to-end run. Keep as the reference the median of three runs, so the
floor sits clear of the noise and a halving still falls through it.

Without SAGA_BOOTSTRAP_SERVERS it starts (and afterwards stops) an embedded broker of
its own in a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.run import RESULTS, ceiling, end_to_end, pregenerated_inputs, say
from saga.config import Settings
from saga.dev.embedded import EmbeddedKafka

REFERENCE = Path(__file__).parent / "smoke_reference.json"
#: Below this share of the reference ratio the guard fails.
TOLERANCE = 0.5
#: The smoke's own broker listens this far above SAGA_KAFKA_PORT, clear of `saga kafka
#: start`'s, so it runs next to a developer's cluster.
PORT_OFFSET = 300


def inputs_per_saga() -> float:
    """The inbox inputs an order saga of the mix consumes (one in five out of stock)."""
    return sum(len(pregenerated_inputs("s", rare=n == 0)) for n in range(5)) / 5


def measure(base: Settings, sagas: int, loop_inputs: int) -> dict[str, Any]:
    # A fresh broker's JVM is cold: the first loop runs at half the rate of the next
    # ones, and one warm loop alone varied from 9k to 20k inputs/s between runs. So one
    # loop warms the broker up and is not counted, and the baseline is the median of
    # three loops after the end-to-end run.
    say(f"smoke: warming the broker up, {loop_inputs} inputs through a bare loop")
    say(f"  {ceiling(base, loop_inputs)} (not counted)")
    say(f"smoke: end to end, {sagas} order sagas with the five service processes")
    e2e, _ = end_to_end(base, sagas, paced_s=2.0, light_s=0)
    say(f"  {e2e['sagas_per_s']} sagas/s; step p50/p99 {e2e['step_latency_ms']['p50']}/"
        f"{e2e['step_latency_ms']['p99']} ms")
    loops = []
    for n in range(3):
        say(f"smoke: ceiling {n + 1} of 3, {loop_inputs} inputs through a bare "
            "transactional loop")
        loops.append(ceiling(base, loop_inputs)["inputs_per_s"])
        say(f"  {loops[-1]} inputs/s")
    bare = statistics.median(loops)
    ratio = e2e["sagas_per_s"] * inputs_per_saga() / bare
    return {"ceiling_inputs_per_s": bare, "ceiling_runs_inputs_per_s": loops,
            "end_to_end_sagas_per_s": e2e["sagas_per_s"],
            "inputs_per_saga": inputs_per_saga(),
            "end_to_end_inputs_vs_ceiling": round(ratio, 4),
            "step_latency_ms": {k: e2e["step_latency_ms"][k] for k in ("p50", "p99")},
            "cpu_us_per_saga": e2e["cpu_us_per_saga"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench-smoke", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sagas", type=int, default=1500)
    parser.add_argument("--ceiling-inputs", type=int, default=30000)
    parser.add_argument("--set-reference", action="store_true",
                        help=f"keep this run's ratio as the reference ({REFERENCE.name})")
    args = parser.parse_args(argv)
    began = time.monotonic()
    base = Settings.from_env()
    broker: EmbeddedKafka | None = None
    with tempfile.TemporaryDirectory(prefix="saga-smoke-") as tmp:
        if not base.bootstrap_servers:
            broker = EmbeddedKafka(Path(tmp), base_port=base.kafka_port + PORT_OFFSET,
                                   progress=say)
            base = base.with_(bootstrap_servers=broker.start(1).bootstrap_servers)
        try:
            result = measure(base, args.sagas, args.ceiling_inputs)
        finally:
            if broker is not None:
                broker.stop()
    result["seconds"] = round(time.monotonic() - began, 1)
    result["when"] = datetime.now(UTC).isoformat(timespec="seconds")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "smoke-latest.json").write_text(json.dumps(result, indent=2) + "\n")
    ratio = result["end_to_end_inputs_vs_ceiling"]
    if args.set_reference:
        REFERENCE.write_text(json.dumps({
            "end_to_end_inputs_vs_ceiling": ratio, "when": result["when"],
            "measured": result, "command": "make bench-smoke SMOKE_ARGS=--set-reference"},
            indent=2) + "\n")
        say(f"smoke: reference set to {ratio} ({REFERENCE})")
        return 0
    reference = json.loads(REFERENCE.read_text())["end_to_end_inputs_vs_ceiling"]
    floor = round(reference * TOLERANCE, 4)
    verdict = (f"end-to-end inputs/s are {ratio} of the bare loop's in this run "
               f"({result['end_to_end_sagas_per_s']} sagas/s against "
               f"{result['ceiling_inputs_per_s']} inputs/s); the reference is {reference}, "
               f"the floor {floor}")
    if ratio < floor:
        print(f"bench-smoke FAILED: {verdict}.\nA change made the engine at least twice as "
              "slow relative to Kafka on this machine: profile it (`make profile`) before "
              "landing, or, if the cost is deliberate, set a new reference with "
              "`make bench-smoke SMOKE_ARGS=--set-reference` and say why in "
              "docs/benchmarks.md.", file=sys.stderr)
        return 1
    say(f"smoke: ok, {verdict} ({result['seconds']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
