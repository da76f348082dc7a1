"""RocksStore.export / ingest: how the shares of a parallel rebuild become one store."""

from __future__ import annotations

from pathlib import Path

from saga.store.rocksdb import RocksStore


def _store(path: Path, keys: dict[bytes, bytes]) -> RocksStore:
    store = RocksStore(path, fmt=b"9", what="test store", rebuilt_from="a test")
    batch = store.batch()
    for key, value in keys.items():
        batch.put(key, value)
    store.put_offsets(batch, {len(keys): len(keys) * 10})
    store.write(batch)
    return store


def _contents(store: RocksStore) -> dict[bytes, bytes]:
    return dict(store.scan(b""))


def test_the_shares_ingested_hold_every_key_and_keep_the_format(tmp_path: Path) -> None:
    # Interleaved key ranges, as two shares of a rebuild have (saga ids of either share
    # sort among the other's): each ingest goes in on its own.
    evens = {b"s\x00k-%03d" % n: b"even %d" % n for n in range(0, 40, 2)}
    odds = {b"s\x00k-%03d" % n: b"odd %d" % n for n in range(1, 40, 2)}
    target = RocksStore(tmp_path / "target", fmt=b"9", what="test store",
                        rebuilt_from="a test")
    for name, keys in (("evens", evens), ("odds", odds)):
        share = _store(tmp_path / name, keys)
        assert share.export(tmp_path / f"{name}.sst") == len(keys) + 1  # and its offset
        share.close()
        target.ingest(tmp_path / f"{name}.sst")
        assert not (tmp_path / f"{name}.sst").exists()  # moved in, not copied

    held = _contents(target)
    assert {k: v for k, v in held.items() if k.startswith(b"s\x00")} == {**evens, **odds}
    assert target.offsets() == {20: 200}
    assert held[b"m\x00format"] == b"9"
    target.close()
    # and it opens again as a store of its format
    RocksStore(tmp_path / "target", fmt=b"9", what="test store", rebuilt_from="a test").close()


def test_a_store_without_data_exports_no_file(tmp_path: Path) -> None:
    empty = RocksStore(tmp_path / "empty", fmt=b"9", what="test store", rebuilt_from="a test")
    empty.stamp("cluster-1/topic-1")  # marks are not data
    assert empty.export(tmp_path / "empty.sst") == 0
    assert not (tmp_path / "empty.sst").exists()
    empty.close()
