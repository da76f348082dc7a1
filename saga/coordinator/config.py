"""Tuning of one coordinator instance (flags of `saga coordinator run`)."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field


@dataclass(frozen=True)
class CoordinatorConfig:
    #: Stable per instance: it names the transactional.id (fencing) and the local stores.
    instance_id: str = field(default_factory=lambda: socket.gethostname())
    #: Inbox records per transaction.
    batch_size: int = 500
    #: Longest wait for an input when the inbox has none: how often a quiet loop looks
    #: for due timers. A batch never waits to fill: it is what has arrived.
    max_wait_ms: int = 20
    #: Live workflow coroutines and committed states kept in memory; an evicted saga
    #: replays from its state.
    cache_size: int = 10_000
    #: Bytes of committed saga states kept in memory (their stored JSON size).
    state_cache_bytes: int = 256 * 1024 * 1024
    #: Most timers fired per loop turn: a storm of due timers cannot starve the inbox.
    timer_fire_limit: int = 1000
    #: Seconds between progress lines on stderr; 0 for none.
    report_every_s: float = 10.0
    #: Seconds between refreshes of the per-partition gauges (lag, pending timers).
    gauges_every_s: float = 5.0
    #: How long start-up waits for a cluster that answers with transient errors (a
    #: broker restarting, a controller election) before giving up.
    startup_wait_s: float = 120.0
    #: How long an assignment waits for the committed offsets, which the broker holds
    #: back while the partition's previous owner has a transaction open (at most the
    #: transaction timeout, 30 s).
    committed_wait_s: float = 60.0
    #: Replaced producers still blocked in librdkafka before the process gives up.
    max_stuck_producers: int = 3
