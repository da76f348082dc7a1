"""The saga-to-partition function agrees with Kafka's default partitioner."""

from __future__ import annotations

import pytest
from aiokafka.partitioner import DefaultPartitioner, murmur2

from saga.kafka.partitioner import murmur2 as our_murmur2
from saga.kafka.partitioner import partition_of

# Every tail length (0-3 bytes past a whole word), empty, long and non-ASCII keys.
KEYS = ["", "o", "o-", "o-1", "o-00", "o-00001", "order-2026-11-24-000042", "ü-saga", "x" * 301]


@pytest.mark.parametrize("key", KEYS)
def test_murmur2_is_kafkas(key: str) -> None:
    assert our_murmur2(key.encode()) == murmur2(key.encode())


@pytest.mark.parametrize("partitions", [1, 3, 6, 12, 64])
def test_partition_of_matches_the_java_default_partitioner(partitions: int) -> None:
    every = list(range(partitions))
    for n in range(2000):
        saga_id = f"o-{n:05d}"
        assert partition_of(saga_id, partitions) == DefaultPartitioner()(
            saga_id.encode(), every, every)
