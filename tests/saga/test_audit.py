"""Invariant 4 instance by instance, on the JSON the CLI prints (no Kafka needed)."""

from __future__ import annotations

from typing import Any

from saga.dev.audit import projection_violations

REBUILT = {"partitions": {"0": {"checksum": "aaa", "sagas": 2, "journal_offset": 40},
                          "1": {"checksum": "bbb", "sagas": 3, "journal_offset": 61}}}


def _live(**instances: dict[str, tuple[str, int, int | None]]) -> dict[str, Any]:
    return {"instances": {
        name: {"partitions": {p: {"checksum": c, "sagas": n, "journal_offset": o}
                              for p, (c, n, o) in rows.items()}}
        for name, rows in instances.items()}}


def test_current_copies_equal_to_the_rebuild_pass() -> None:
    audit = projection_violations(_live(c1={"0": ("aaa", 2, 39)},
                                        c2={"1": ("bbb", 3, 60)}), REBUILT)
    assert audit.problems == []
    assert (audit.compared, audit.stale) == (2, 0)


def test_an_older_copy_on_a_former_owner_is_counted_not_compared() -> None:
    audit = projection_violations(_live(c1={"0": ("aaa", 2, 39), "1": ("old", 1, 20)},
                                        c2={"1": ("bbb", 3, 60)}), REBUILT)
    assert audit.problems == []
    assert (audit.compared, audit.stale) == (2, 1)


def test_a_current_copy_that_differs_is_a_violation_naming_instance_and_partition() -> None:
    audit = projection_violations(_live(c1={"0": ("aaa", 2, 39)},
                                        c2={"1": ("zzz", 3, 60)}), REBUILT)
    assert len(audit.problems) == 1
    assert "instance c2, partition 1" in audit.problems[0]


def test_two_instances_equally_far_must_both_match() -> None:
    audit = projection_violations(_live(c1={"0": ("aaa", 2, 39), "1": ("bbb", 3, 60)},
                                        c2={"1": ("bbx", 3, 60)}), REBUILT)
    assert [p for p in audit.problems if "instance c2" in p]
    assert audit.compared == 3


def test_a_partition_nobody_holds_is_a_violation() -> None:
    audit = projection_violations(_live(c1={"0": ("aaa", 2, 39)}), REBUILT)
    assert audit.problems == ["invariant 4: partition 1 has 3 sagas in the journal and no "
                              "instance holds them"]
