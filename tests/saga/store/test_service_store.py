"""A service's store: versioned writes with the changelog offsets, and restores that keep
the newest version of a key whichever partition (or order) it comes from."""

from __future__ import annotations

from pathlib import Path

from saga.store.service_store import ServiceStore, StateChange, VersionClock


def change(key: str, version: int, value: object) -> StateChange:
    return StateChange(key, version, value, "o-1:0:1")


def test_writes_reads_scans_and_offsets(tmp_path: Path) -> None:
    store = ServiceStore(tmp_path / "s")
    store.apply([change("data/stock/a", 5, 3), change("data/stock/b", 6, None),
                 change("data/ledger/x", 7, {"k": 1}),
                 change("step/o-1:0", 8, {"command_id": "o-1:0:1", "reply": {"outcome": "OK"}})],
                {2: 41})
    assert store.get("stock/a") == 3
    assert list(store.scan("stock/")) == [("stock/a", 3), ("stock/b", None)]
    assert store.step_reply("o-1:0").command_id == "o-1:0:1"  # type: ignore[union-attr]
    assert store.step_reply("o-1:1") is None
    assert store.store.offset(2) == 41
    store.close()
    reopened = ServiceStore(tmp_path / "s")
    assert reopened.clock.last == 8  # versions go on from the highest seen
    assert reopened.clock.next() > 8
    reopened.close()


def test_a_restore_keeps_the_newest_version_of_a_key(tmp_path: Path) -> None:
    store = ServiceStore(tmp_path / "s")
    store.apply([change("data/stock/a", 10, 7)], {0: 3})
    # partition 1's changelog holds an older write of the same key, and a newer one of
    # another: restoring it must not put stock/a back to 9
    written = store.apply([change("data/stock/a", 4, 9), change("data/stock/b", 11, 1),
                           change("data/stock/b", 12, 0)], {1: 3}, newer_only=True)
    assert written == 2
    assert (store.get("stock/a"), store.get("stock/b")) == (7, 0)
    store.close()


def test_the_clock_never_goes_back() -> None:
    clock = VersionClock(last=10**18)  # a version from the future (another machine's clock)
    assert clock.next() == 10**18 + 1
    clock.observe(5)
    assert clock.next() == 10**18 + 2
