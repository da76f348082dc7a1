"""The per-partition gauges, against a consumer that reports only what a real one caches."""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from saga.coordinator import observe
from saga.store.timer_index import MemoryTimerIndex
from saga.telemetry import metrics as m


class CachedEnds:
    """get_watermark_offsets as librdkafka answers it: cached, the ends the last fetch
    reported (-1001 for what no fetch told, fetches never tell the low end); not cached,
    the broker's answer (``broker``), counted."""

    def __init__(self, ends: dict[int, tuple[int, int]],
                 broker: dict[int, tuple[int, int]]) -> None:
        self.ends = ends
        self.broker = broker
        self.asked: list[int] = []

    def get_watermark_offsets(self, tp: TopicPartition, timeout: float | None = None,
                              cached: bool = False) -> tuple[int, int]:
        if cached:
            return self.ends.get(tp.partition, (-1001, -1001))
        self.asked.append(tp.partition)
        if tp.partition not in self.broker:
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "timed out"))
        return self.broker[tp.partition]

    def position(self, _: Any) -> Any:  # unset until a partition yields a record
        raise AssertionError("the consumer's position is unset for an idle partition")


def lag(partition: int) -> float | None:
    for family in m.CONSUMER_LAG.collect():
        for sample in family.samples:
            if sample.labels == {"partition": str(partition)}:
                return sample.value
    return None


def test_lag_of_every_owned_partition_from_the_loops_offsets() -> None:
    consumer = CachedEnds({0: (-1001, 0), 1: (-1001, 40), 2: (-1001, 9)},
                          broker={0: (0, 0), 2: (5, 9), 3: (0, 7)})
    owned = observe.partitions(consumer, "t.inbox", [0, 1, 2, 3], {1: 30},
                               MemoryTimerIndex(), set())
    assert owned == {0, 1, 2, 3}
    assert lag(0) == 0          # never had a record, no offset of the group's
    assert lag(1) == 10         # 30 of 40 committed or consumed: no request
    assert lag(2) == 4          # no offset yet: read from the start, 5
    assert lag(3) == 7          # no fetch answered yet: asked
    assert consumer.asked == [0, 2, 3]

    observe.partitions(consumer, "t.inbox", [1], {1: 40}, MemoryTimerIndex(), owned)
    assert lag(1) == 0
    assert lag(0) is None  # revoked: forgotten
    assert lag(2) is None
    observe.partitions(consumer, "t.inbox", [], {}, MemoryTimerIndex(), {1})
    assert lag(1) is None


def test_a_broker_that_does_not_answer_costs_one_timeout_a_round() -> None:
    consumer = CachedEnds({1: (-1001, 40)}, broker={})
    observe.partitions(consumer, "t.inbox", [0, 1, 2, 3], {1: 30}, MemoryTimerIndex(), set())
    assert consumer.asked == [0]  # timed out: 2 and 3 wait for the next round
    assert lag(1) == 10  # known from the fetches, no request needed
    assert lag(0) is None
    assert lag(3) is None
