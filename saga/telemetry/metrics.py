"""Every Prometheus metric kafka-saga exports, in one place (prometheus_client, the
Prometheus project's own Python client): names by Prometheus' conventions (a unit suffix,
``_total`` for counters), labels that stay few.

The coordinator and the services serve them with ``--metrics-port`` (or
SAGA_METRICS_PORT) at ``/metrics``; `saga server` serves them on its own port beside the
API. Each process exports the families it updates.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

#: Seconds: from a millisecond-fast step to a day-long wait.
_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)
_FAST = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)

# ---- the coordinator ---------------------------------------------------------------------
INPUTS = Counter("saga_inputs_total", "Inbox records consumed, by kind of input", ["kind"])
DECISIONS = Counter("saga_decisions_total", "Inputs decided, by outcome: journaled "
                    "(wrote entries), unchanged (nothing to write), rejected (dead-lettered)",
                    ["outcome"])
JOURNAL_ENTRIES = Counter("saga_journal_entries_total", "Journal entries written, by event",
                          ["event"])
COMMANDS = Counter("saga_commands_total", "Commands issued, by service, command and kind",
                   ["service", "command", "kind"])
STEP_LATENCY = Histogram("saga_step_latency_seconds", "From a command's issue to the "
                         "decision on its reply or timeout", ["service", "command"],
                         buckets=_LATENCY)
BATCH_DURATION = Histogram("saga_batch_duration_seconds", "Deciding and committing one "
                           "batch", buckets=_FAST)
COMMIT_DURATION = Histogram("saga_transaction_commit_seconds", "The Kafka transaction of "
                            "one batch, begin to commit", buckets=_FAST)
TRANSACTIONS = Counter("saga_transactions_total", "Batches committed or aborted",
                       ["result"])
CONSUMER_LAG = Gauge("saga_consumer_lag_records", "Inbox records not yet consumed, per "
                     "owned partition", ["partition"])
TIMERS_PENDING = Gauge("saga_timers_pending", "Durable timers pending, per owned partition",
                       ["partition"])
TIMERS_OVERDUE = Gauge("saga_timers_overdue", "Pending timers already due, per owned "
                       "partition", ["partition"])
TIMERS_FIRED = Counter("saga_timers_fired_total", "Durable timers fired")
TIMER_LATENESS = Histogram("saga_timer_lateness_seconds", "From a timer's due time to its "
                           "firing", buckets=(*_FAST, 30, 60, 300))
DEAD_LETTERS = Counter("saga_dead_letters_total", "Records set aside in saga.dlq, by reason "
                       "and component", ["reason", "component"])
REBALANCES = Counter("saga_rebalances_total", "Partition assignments and revocations",
                     ["event"])
PRODUCER_REPLACEMENTS = Counter("saga_producer_replacements_total", "Transactional "
                                "producers replaced because a call wedged in librdkafka")
PARKED = Counter("saga_parked_total", "Sagas parked, by reason", ["reason"])

# ---- the services --------------------------------------------------------------------------
SERVICE_COMMANDS = Counter("saga_service_commands_total", "Commands a service handled, by "
                           "outcome (ok, business_error, technical_error, answered: from "
                           "the step's stored reply)", ["service", "command", "outcome"])
HANDLER_DURATION = Histogram("saga_service_handler_seconds", "A handler's run",
                             ["service", "command"], buckets=_LATENCY)
SERVICE_BATCHES = Counter("saga_service_transactions_total", "A service's batch "
                          "transactions, by result", ["service", "result"])

# ---- the visibility server -----------------------------------------------------------------
INDEXED = Counter("saga_index_entries_total", "Journal entries the visibility index folded")
INDEX_LAG = Gauge("saga_index_lag_records", "Records the index has not read yet, per topic",
                  ["topic"])
SAGAS = Gauge("saga_sagas", "Sagas in the index, by status", ["status"])


def serve(port: int, host: str) -> None:
    """Serve this process's metrics at http://host:port/metrics (a daemon thread)."""
    start_http_server(port, addr=host)
