"""The pure parts of `make bench-peers`: the load keeps C in flight and checks every
saga's outcome; the table compares with the best peer; Restate's server is configured for
loopback only and its fsync is read from the right store (no servers needed)."""

from __future__ import annotations

import asyncio
import tomllib
from pathlib import Path
from typing import Any

import pytest

from bench.peers import common, restate_peer
from bench.peers.__main__ import table


def test_the_load_keeps_exactly_c_in_flight_and_counts_each_outcome() -> None:
    in_flight = 0
    most = 0

    async def one(n: int) -> str:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.001)
        in_flight -= 1
        return common.expected_status(n)

    latencies, outcomes, wall_s = asyncio.run(common.keep_in_flight(50, 7, one))
    assert most == 7
    assert len(latencies) == 50
    assert outcomes == {"cancelled": 10, "completed": 40}
    assert wall_s > 0


def test_a_saga_with_the_wrong_outcome_fails_the_run() -> None:
    async def one(n: int) -> str:
        return "completed"  # every fifth should have been cancelled (out of stock)

    with pytest.raises(AssertionError, match="saga 0 ended 'completed', not 'cancelled'"):
        asyncio.run(common.keep_in_flight(10, 2, one))


def test_the_activities_refuse_the_out_of_stock_order() -> None:
    with pytest.raises(common.OutOfStock):
        common.reserve(common.order_input("o-0", 0))
    assert common.reserve(common.order_input("o-1", 1)) == {"reservation_id": "rs-o-1"}


def _result(system: str, rate: float) -> dict[str, object]:
    return {"system": system, "version": "v", "sagas_per_s": rate, "cpu_s_per_saga": 0.002,
            "latency_ms": {"p50": 10.0, "p99": 20.0}, "persists": "p", "fsync": "f"}


def test_the_table_gives_each_system_as_a_multiple_of_the_best_peer() -> None:
    rows = table([_result("temporal", 40.0), _result("restate", 100.0),
                  _result("kafka-saga", 550.0), {"system": "dbos-sqlite", "error": "boom"}]
                 ).splitlines()
    assert rows[2].startswith("| temporal | 40.0 | 0.4x |")
    assert rows[3].startswith("| restate | 100.0 | 1.0x |")
    assert rows[4].startswith("| kafka-saga | 550.0 | 5.5x | 10 | 20 | 2.0 |")
    assert rows[5] == "| dbos-sqlite | failed: boom | | | | | | | |"
    assert common.latency_summary([1.0, 2.0, 3.0, 100.0]) == {
        "p50": 2.0, "p90": 100.0, "p99": 100.0, "max": 100.0}


def test_restate_listens_on_loopback_only_and_keeps_its_data_in_the_work_dir(
        tmp_path: Path) -> None:
    config = tomllib.loads(restate_peer.write_config(tmp_path).read_text())
    binds = [config["bind-address"], config["admin"]["bind-address"],
             config["ingress"]["bind-address"]]
    assert all(bind.startswith("127.0.0.1:") for bind in binds)
    assert config["advertised-address"].startswith("http://127.0.0.1:")
    assert config["listen-mode"] == "tcp"  # no Unix sockets either
    assert Path(config["base-dir"]).is_relative_to(tmp_path)
    assert config["disable-telemetry"] is True


def test_restate_fsync_is_read_from_the_store_its_log_provider_writes_to() -> None:
    settings: dict[str, Any] = {"default-replication": 1,
                                "bifrost": {"default-provider": "replicated",
                                            "local": {"rocksdb-disable-wal-fsync": True}},
                                "log-server": {"rocksdb-disable-wal-fsync": False}}
    persists, fsync = restate_peer.durability(settings)
    assert "replicated loglet, replication 1" in persists
    assert fsync.startswith("log-server rocksdb-disable-wal-fsync=false")
    assert "fsynced on every write batch" in fsync
    settings["bifrost"]["default-provider"] = "local"
    _, fsync = restate_peer.durability(settings)
    assert fsync.startswith("bifrost.local rocksdb-disable-wal-fsync=true")
    assert "not fsynced per batch" in fsync
