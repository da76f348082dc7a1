"""A running kafka-saga for system tests: topics, a coordinator and the example
services as real processes against the session's Kafka."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from saga.config import Settings
from saga.dev.stack import Stack
from saga.engine import events as ev
from saga.engine.state import SagaState
from saga.kafka.topics import admin_client, create_topics, load_specs
from saga.store.local_projections import LocalProjections

STOCK = {"sku-1": 1000, "sku-2": 1000, "sku-rare": 0}


def order(saga_id: str, sku: str = "sku-1", qty: int = 2, amount: int = 4599
          ) -> dict[str, Any]:
    return {"id": saga_id, "customer": "c-9", "amount_cents": amount,
            "items": [{"sku": sku, "qty": qty}]}


@contextmanager
def running_stack(settings: Settings, *, coordinators: tuple[str, ...] = ("c1",),
                  workflows: str | None = None,
                  coordinator_env: dict[str, str] | None = None) -> Iterator[Stack]:
    create_topics(admin_client(settings.kafka), load_specs(settings))
    stack = Stack(settings, stock=STOCK, workflows=workflows)
    stack.start_all(coordinators, coordinator_env=coordinator_env)
    try:
        yield stack
    finally:
        stack.stop_all()


def history(settings: Settings, saga_id: str) -> list[ev.Entry]:
    """One saga's journal entries, from the coordinators' projections."""
    projections = LocalProjections(settings)
    try:
        return projections.history(saga_id)
    finally:
        projections.close()


def wait_terminal(stack: Stack, ids: list[str], timeout_s: float = 120
                  ) -> dict[str, SagaState]:
    states = stack.wait_until(lambda s: all(i in s and s[i].terminal for i in ids), timeout_s)
    stuck = {i: (states[i].status, states[i].last_error) if i in states else None
             for i in ids if i not in states or not states[i].terminal}
    assert not stuck, f"not terminal after {timeout_s}s: {dict(list(stuck.items())[:5])}\n" \
                      + "\n".join(stack.dead())
    return states


def wait_for(predicate: Any, timeout_s: float, what: str, *, poll_s: float = 0.3) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(poll_s)
