"""The long-running processes settle the cyclic collector before their work starts:
start-up's objects frozen out of its scans, young collections every
SAGA_GC_YOUNG_THRESHOLD allocations; 0 leaves Python's thresholds alone."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from saga.cli.process_commands import settle_the_heap
from saga.config import Settings
from saga.errors import ConfigError


@pytest.fixture(autouse=True)
def restored_collector() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_start_up_objects_are_frozen_and_young_collections_come_less_often() -> None:
    _, middle, old = gc.get_threshold()
    settle_the_heap(Settings(gc_young_threshold=12_345))
    assert gc.get_threshold() == (12_345, middle, old)
    assert gc.get_freeze_count() > 1000  # this test process's modules, at least


def test_zero_keeps_pythons_thresholds() -> None:
    before = gc.get_threshold()
    settle_the_heap(Settings(gc_young_threshold=0))
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_a_negative_threshold_is_refused_with_a_hint() -> None:
    with pytest.raises(ConfigError, match="gc_young_threshold") as refused:
        Settings.from_env({"SAGA_GC_YOUNG_THRESHOLD": "-1"})
    assert "SAGA_GC_YOUNG_THRESHOLD" in (refused.value.hint or "")
