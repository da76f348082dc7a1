"""Prometheus metrics on every process, moving while sagas run: the coordinator's and the
services' --metrics-port, the server's /metrics beside its API."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from saga.config import Settings
from saga.dev.stack import Stack
from saga.engine.inputs import DeliverSignal, StartSaga
from saga.kafka.topics import admin_client, create_topics, load_specs
from tests.saga.server.test_api import ready
from tests.system import STOCK, order, wait_terminal

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str) -> Samples:
    text = httpx.get(url, timeout=10).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def total(samples: Samples, name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in samples.items()
               if n == name and all((k, v2) in ls for k, v2 in labels.items()))


def gauged(samples: Samples, partitions: int) -> bool:
    return all(("saga_consumer_lag_records", (("partition", str(p)),)) in samples and
               ("saga_timers_pending", (("partition", str(p)),)) in samples
               for p in range(partitions)) and total(samples, "saga_timers_pending") == 0


def test_every_process_exports_metrics_that_move(settings: Settings) -> None:
    create_topics(admin_client(settings.kafka), load_specs(settings))
    stack = Stack(settings, stock=STOCK, metrics=True)
    stack.start_all(["c1"])
    stack.start(stack.add_server("m").name)
    try:
        url = ready(stack, "server-m")
        ids = [f"m-{n}" for n in range(12)]
        for n, saga_id in enumerate(ids):
            stack.send(saga_id, StartSaga("order", {**order(saga_id, "sku-rare" if n % 4 == 0
                                                            else "sku-1"),
                                                    "pick_timeout_s": 1}))
            if n % 2:
                stack.send(saga_id, DeliverSignal("warehouse_picked", None))
        stack.send_raw(b"junk", b"not an input")
        stack.flush()
        wait_terminal(stack, ids)
        # The gauges are refreshed every few seconds: wait for a round that saw every
        # partition (no sample at all would also sum to 0) with no timer left.
        stack.wait_until(lambda _: gauged(scrape(stack.metrics_url("coordinator-c1")),
                                          settings.partitions), 30)
        coordinator = scrape(stack.metrics_url("coordinator-c1"))
        payments = scrape(stack.metrics_url("service-payments"))
        server = scrape(f"{url}/metrics")
    finally:
        stack.stop_all()

    assert total(coordinator, "saga_inputs_total", kind="start") == 12
    assert total(coordinator, "saga_inputs_total", kind="reply") >= 12 * 3
    assert total(coordinator, "saga_inputs_total", kind="timer") == 3  # never picked, in stock
    assert total(coordinator, "saga_decisions_total", outcome="journaled") >= 12 * 4
    assert total(coordinator, "saga_commands_total", service="payments", command="refund",
                 kind="COMPENSATION") == 3
    assert total(coordinator, "saga_step_latency_seconds_count", service="payments",
                 command="charge") == 12
    assert total(coordinator, "saga_journal_entries_total", event="SagaCompleted") == 12
    assert total(coordinator, "saga_batch_duration_seconds_count") > 0
    assert total(coordinator, "saga_transaction_commit_seconds_count") > 0
    assert total(coordinator, "saga_transactions_total", result="committed") > 0
    assert total(coordinator, "saga_timers_fired_total") == 3
    assert total(coordinator, "saga_timer_lateness_seconds_count") == 3
    assert total(coordinator, "saga_dead_letters_total", reason="undecodable") == 1
    assert total(coordinator, "saga_rebalances_total", event="assigned") >= 1
    # Every owned partition has a lag, also one that no record has reached yet.
    assert all(("saga_consumer_lag_records", (("partition", str(p)),)) in coordinator
               for p in range(settings.partitions))
    assert total(payments, "saga_service_commands_total", service="payments",
                 command="charge", outcome="ok") == 12
    assert total(payments, "saga_service_handler_seconds_count", service="payments") >= 15
    assert total(payments, "saga_service_transactions_total", result="committed") > 0
    assert total(server, "saga_sagas", status="COMPLETED") == 9
    assert total(server, "saga_sagas", status="COMPENSATED") == 3
    assert total(server, "saga_index_entries_total") > 12 * 10
