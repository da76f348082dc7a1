"""A rebuild folded in worker processes: how many, what the parent does with their
answers, and what it says when one dies. The workers here are stand-ins (a script in
place of the real one), so no broker is needed; tests/saga/coordinator/
test_projection.py rebuilds a real journal both ways and compares every key."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from saga.config import Settings
from saga.coordinator import recovery
from saga.errors import ConfigError, JournalGap, RebuildFailed
from saga.store.projection import RocksProjection

#: A worker that folds nothing but writes a state and an offset per partition it is
#: given, as the real one leaves them (an exported SST), and reports as it does.
_STAND_IN = """
import pickle, sys
from saga.store.projection import RocksProjection
settings, topic, into, partitions = pickle.load(sys.stdin.buffer)
share = RocksProjection(into)
batch = share.store.batch()
for p in partitions:
    batch.put(b"s\\x00saga-%d" % p, b"{}")
share.store.put_offsets(batch, {p: 100 + p for p in partitions})
share.store.write(batch)
share.store.export(into.with_suffix(".sst"))
share.close()
out = sys.stdout.buffer
pickle.dump(("read", 1000), out)
pickle.dump(("done", 10 * len(partitions)), out)
out.flush()
"""

_ANSWERS_A_GAP = """
import pickle, sys
from saga.errors import JournalGap
pickle.load(sys.stdin.buffer)
pickle.dump(("done", JournalGap("saga x: entry 7 where 5 was due", hint="look")), sys.stdout.buffer)
"""


def _fold(tmp_path: Path, worker: str, monkeypatch: pytest.MonkeyPatch,
          partitions: list[int], workers: int,
          progress: list[tuple[int, int]] | None = None) -> tuple[RocksProjection, int]:
    monkeypatch.setattr(recovery, "_WORKER", worker)
    projection = RocksProjection(tmp_path / "projection")
    if progress is not None:  # the journal's length, without a broker to ask
        monkeypatch.setattr(recovery, "backlog", lambda *_args, **_kw: 2000)
    try:
        applied = recovery._catch_up_in_parallel(
            projection, Settings.from_env({}), "saga.journal", partitions, workers,
            None if progress is None else lambda done, total: progress.append((done, total)))
    except BaseException:
        projection.close()
        raise
    return projection, applied


def test_the_shares_folded_apart_end_in_one_projection(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    progress: list[tuple[int, int]] = []
    projection, applied = _fold(tmp_path, _STAND_IN, monkeypatch, [0, 1, 2, 3, 4], 2,
                                progress)
    # what the workers said they read, summed, each count once, ending at the whole
    assert progress[-1] == (2000, 2000)
    assert len(set(progress)) == len(progress)
    assert [done for done, _ in progress] == sorted(done for done, _ in progress)
    try:
        assert applied == 50  # each worker's count, summed
        assert projection.journal_offsets() == {p: 100 + p for p in range(5)}
        assert sorted(saga for saga, _ in projection.stored_states()) == [
            f"saga-{p}" for p in range(5)]
    finally:
        projection.close()
    assert os.listdir(tmp_path) == ["projection"]  # the shares' folders are gone


def test_a_worker_that_dies_without_an_answer_is_an_error_with_a_way_out(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(RebuildFailed) as raised:
        _fold(tmp_path, "import sys; sys.exit(3)", monkeypatch, [0, 1, 2, 3], 2)
    assert "exit code 3" in raised.value.message
    assert "partitions [0, 2]" in raised.value.message or \
        "partitions [1, 3]" in raised.value.message
    assert "--workers 1" in str(raised.value.hint)


def test_a_workers_error_is_raised_as_it_was(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(JournalGap) as raised:
        _fold(tmp_path, _ANSWERS_A_GAP, monkeypatch, [0, 1], 2)
    assert raised.value.message == "saga x: entry 7 where 5 was due"
    assert raised.value.hint == "look"


@pytest.mark.parametrize(("asked", "journal", "expected"), [
    (1, 10**6, 1),
    (4, 10, 4),  # asked for: no threshold
    (9, 10, 6),  # never more than the partitions
    (0, recovery.PARALLEL_FROM_RECORDS - 1, 1),  # too short to repay the workers
    (0, recovery.PARALLEL_FROM_RECORDS, min(6, len(os.sched_getaffinity(0)))),
])
def test_how_many_workers(monkeypatch: pytest.MonkeyPatch, asked: int, journal: int,
                          expected: int) -> None:
    monkeypatch.setattr(recovery, "backlog", lambda *_args, **_kw: journal)
    assert recovery.rebuild_workers(Settings.from_env({}), "saga.journal", list(range(6)),
                                    asked) == expected


def test_a_negative_worker_count_is_refused() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        recovery.rebuild_workers(Settings.from_env({}), "saga.journal", [0], -1)




def test_the_shares_a_killed_fold_left_are_removed_and_no_one_elses(tmp_path: Path) -> None:
    stale = tmp_path / ".projection.rebuild-ab12_d34"
    (stale / "share-0").mkdir(parents=True)
    (stale / "share-0" / "000001.sst").write_bytes(b"folded before the kill")
    others = [tmp_path / ".other.rebuild-ab12cd34",  # a fold into another projection
              tmp_path / ".projection.rebuild-kept",  # not a name tempfile makes
              tmp_path / "projection.rebuild-ab12cd34"]  # nor this
    for path in others:
        path.mkdir()
    projection = RocksProjection(tmp_path / "projection")
    try:
        assert recovery.remove_stale_shares(projection) == [stale]
    finally:
        projection.close()
    assert not stale.exists()
    assert all(path.is_dir() for path in others)


@pytest.mark.parametrize("holds", ["a file", "a folder with a file"])
def test_a_rebuild_into_a_folder_that_holds_anything_is_refused(tmp_path: Path,
                                                                holds: str) -> None:
    into = tmp_path / "rebuilt"
    if holds == "a file":
        into.write_text("mine")
    else:
        into.mkdir()
        (into / "CURRENT").write_text("a projection a stopped rebuild left\n")
    with pytest.raises(ConfigError) as raised:
        # no broker is asked: the folder is refused first
        recovery.rebuild_projection(Settings.from_env({}), into)
    assert "already holds files" in raised.value.message
    assert "new or empty folder" in str(raised.value.hint)
    assert into.exists()  # untouched
    if holds == "a file":
        assert into.read_text() == "mine"
    else:
        assert (into / "CURRENT").read_text() == "a projection a stopped rebuild left\n"
