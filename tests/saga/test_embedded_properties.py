"""The development broker's properties (no broker needed)."""

from __future__ import annotations

import pytest

from saga.dev.embedded import broker_threads, kraft_properties


@pytest.mark.parametrize(("cores", "io", "network"),
                         [(1, "2", "1"), (2, "2", "1"), (4, "4", "2"), (64, "8", "3")])
def test_the_broker_runs_no_more_request_threads_than_kafka_nor_than_the_cores(
        cores: int, io: str, network: str) -> None:
    assert broker_threads(cores) == {"num.io.threads": io, "num.network.threads": network}


def test_every_node_the_embedded_cluster_and_the_test_containers_start_is_sized() -> None:
    props = kraft_properties(1, 29092, 29093, "1@127.0.0.1:29093", 1, "/tmp/logs")
    assert {"num.io.threads", "num.network.threads"} <= props.keys()
