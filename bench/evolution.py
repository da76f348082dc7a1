"""Long-lived sagas in `make bench`.

* continue-as-new  a saga that loops (sleep, charge, repeat) 100,000 times, each loop a
                   fresh run, beside the same loop in one run (the baseline, to 5,000
                   loops), both driven through the pure engine into a real RocksDB
                   projection: the time to replay the saga's current run (what a
                   coordinator pays after a restart or an eviction) and what the
                   projection holds for it, at 1,000, 5,000, 10,000 and 100,000 loops.
                   The engine alone, because 100,000 loops through Kafka would be
                   200,000 round trips; the replay and the projection are the code the
                   coordinator runs.
* fan-out          a parent saga starting 1,000 child order sagas and gathering them, on
                   the broker with the five services, beside the baseline of the same
                   1,000 order sagas started directly by a client; wall time and the
                   coordinator's peak memory (VmHWM) for each.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from saga import SagaContext, seconds, workflow
from saga.client import BlockingSagaClient
from saga.config import Settings
from saga.dev.stack import Stack
from saga.engine.decider import Decider
from saga.engine.events import TimerPurpose
from saga.engine.inputs import CommandReply, FireTimer, Input, ReplyOutcome, StartSaga
from saga.engine.replay import check_replay
from saga.engine.state import SagaState
from saga.engine.workflow import WorkflowRegistry
from saga.kafka.topics import admin_client, create_topics, load_specs
from saga.store.projection import RocksProjection, entry_to_json

LOOPS = (1_000, 5_000, 10_000, 100_000)
#: The one-run baseline stops here: its state grows with every loop, so each decision
#: costs more (and at 100,000 entries a run is parked by the history budget).
SINGLE_RUN_LOOPS = (1_000, 5_000)
REGISTRY = WorkflowRegistry()


@workflow("bench_loop_continued", registry=REGISTRY)
async def loop_continued(ctx: SagaContext, data: dict[str, Any]) -> None:
    await ctx.sleep(seconds(60))
    await ctx.call("payments", "charge", {"round": data["round"], "amount_cents": 100})
    ctx.continue_as_new({"round": data["round"] + 1})


@workflow("bench_loop_single", registry=REGISTRY)
async def loop_single(ctx: SagaContext, data: dict[str, Any]) -> None:
    round_ = 0
    while True:
        await ctx.sleep(seconds(60))
        await ctx.call("payments", "charge", {"round": round_, "amount_cents": 100})
        round_ += 1


def _next_input(state: SagaState) -> Input:
    """What the outside world sends the saga next: its timer fires, or its charge is
    answered."""
    naps = [t for t in state.pending_timers() if t.purpose == TimerPurpose.SLEEP]
    if naps:
        return FireTimer(naps[0].timer_id, naps[0].due_ms)
    step = max(s for s, v in state.steps.items() if v.outcome is None)
    return CommandReply(state.steps[step].command_id, "payments", ReplyOutcome.OK,
                        {"charged": True}, "")


def _loop(saga_type: str, checkpoints: tuple[int, ...], folder: Path) -> list[dict[str, Any]]:
    projection = RocksProjection(folder)
    decider = Decider(REGISTRY, cache_size=10)
    saga_id = f"loop-{saga_type}"
    now_ms = 1_000
    decision = decider.decide(saga_id, None, StartSaga(saga_type, {"round": 0}), now_ms)
    state, pending = decision.state, list(decision.entries)
    assert state is not None
    out: list[dict[str, Any]] = []
    began = time.perf_counter()
    for loops in range(1, checkpoints[-1] + 1):
        for answer in ("timer", "reply"):
            now_ms += 30_000
            decision = decider.decide(saga_id, state, _next_input(state), now_ms)
            assert decision.state is not None, decision
            state = decision.state
            pending.extend(decision.entries)
            if answer == "timer" and loops in checkpoints:
                # mid-loop, its charge in flight: what a coordinator restarted now replays
                projection.commit({saga_id: state}, pending, {0: loops})
                pending = []
                out.append(_measure(projection, state, loops, began))
        if loops % 100 == 0:  # a coordinator's batch
            projection.commit({saga_id: state}, pending, {0: loops})
            pending = []
    projection.close()
    return out


def _measure(projection: RocksProjection, state: SagaState, loops: int, began: float
             ) -> dict[str, Any]:
    replays = []
    for _ in range(5):
        clock = time.perf_counter()
        check_replay(REGISTRY, state)
        replays.append((time.perf_counter() - clock) * 1000)
    held = projection.history(state.saga_id)
    return {"loops": loops, "run": state.run, "entries_in_journal": state.seq,
            "entries_held": len(held),
            "bytes_held": sum(len(entry_to_json(e)) for e in held) + len(state.to_bytes()),
            "replay_ms": round(statistics.median(replays), 3),
            "drive_s": round(time.perf_counter() - began, 1)}


def continue_as_new(progress: Callable[[str], None]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="saga-bench-loop-") as tmp:
        progress(f"  continue-as-new: {LOOPS[-1]} loops, each a fresh run")
        continued = _loop("bench_loop_continued", LOOPS, Path(tmp) / "continued")
        progress(f"  {continued}")
        progress(f"  baseline: {SINGLE_RUN_LOOPS[-1]} loops in one run")
        single = _loop("bench_loop_single", SINGLE_RUN_LOOPS, Path(tmp) / "single")
        progress(f"  {single}")
    first, last = continued[0], continued[-1]
    return {
        "continued": continued, "single_run": single,
        "ratios": {
            "continued_replay_last_vs_first": round(last["replay_ms"] / first["replay_ms"], 2),
            "continued_bytes_last_vs_first": round(last["bytes_held"] / first["bytes_held"], 2),
            "single_replay_last_vs_first": round(
                single[-1]["replay_ms"] / single[0]["replay_ms"], 2),
            "single_vs_continued_replay_at_5000": round(
                single[-1]["replay_ms"] / continued[1]["replay_ms"], 1),
            "single_vs_continued_bytes_at_5000": round(
                single[-1]["bytes_held"] / continued[1]["bytes_held"], 1),
        }}


def _peak_rss_kb(stack: Stack, name: str) -> int:
    popen = stack.processes[name].popen
    assert popen is not None
    for line in Path(f"/proc/{popen.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def _all_ended(ids: list[str], states: dict[str, SagaState]) -> bool:
    return all(i in states and states[i].terminal for i in ids)


def _line(n: int) -> dict[str, Any]:
    return {"sku": "sku-1", "qty": 1, "amount_cents": 1000 + n}


def fan_out(settings: Settings, children: int = 1000) -> dict[str, Any]:
    """The same ``children`` order sagas, started one by one by a client (the baseline),
    then as the children of one bulk_order, each in a fresh coordinator."""
    runs: dict[str, dict[str, Any]] = {}
    for label in ("direct", "children"):  # each on topics and a coordinator of its own
        mine = settings.with_(state_dir=settings.state_dir / label,
                              topic_prefix=f"{settings.topic_prefix}{label}-")
        create_topics(admin_client(mine.kafka), load_specs(mine))
        stack = Stack(mine, stock={"sku-1": 10**9},
                      workflows="saga.examples.order,saga.examples.bulk_order")
        stack.start_all([label])
        coordinator = f"coordinator-{label}"
        try:
            with BlockingSagaClient(settings=stack.settings) as client:
                client.start("order", f"warm-{label}", {
                    "id": f"warm-{label}", "customer": "c", "pick_timeout_s": 1,
                    "amount_cents": 100, "items": [_line(0)]}, wait_s=120)
                client.result(f"warm-{label}", timeout=120)
                idle_kb = _peak_rss_kb(stack, coordinator)
                began = time.monotonic()
                if label == "direct":
                    ids = [f"fan-direct-{n}" for n in range(children)]
                    for n, saga_id in enumerate(ids):
                        stack.send(saga_id, StartSaga("order", {
                            "id": saga_id, "customer": "c", "pick_timeout_s": 1,
                            "amount_cents": 1000 + n, "items": [_line(n)]}))
                    stack.flush()
                    stack.wait_until(partial(_all_ended, ids), 600, poll_s=0.2)
                else:
                    client.start("bulk_order", "fan", {
                        "id": "fan", "customer": "c",
                        "lines": [_line(n) for n in range(children)]})
                    result = client.result("fan", timeout=600)
                    assert result["shipped"] == children, result
                elapsed = time.monotonic() - began
            runs[label] = {"sagas": children, "seconds": round(elapsed, 2),
                           "sagas_per_s": round(children / elapsed, 1),
                           "coordinator_peak_rss_mb": round(
                               _peak_rss_kb(stack, coordinator) / 1024, 1),
                           "coordinator_rss_before_mb": round(idle_kb / 1024, 1)}
            assert stack.dead() == [], stack.dead()
        finally:
            stack.stop_all()
    return {**runs, "ratios": {
        "children_vs_direct_time": round(runs["children"]["seconds"]
                                         / runs["direct"]["seconds"], 2),
        "children_vs_direct_peak_rss": round(runs["children"]["coordinator_peak_rss_mb"]
                                             / runs["direct"]["coordinator_peak_rss_mb"], 2)}}
