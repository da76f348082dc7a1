"""Testing sagas in a millisecond: no broker, no RocksDB, no network (docs/testing.md).

    from saga.testing import Reply, SagaTestEnv

    async def test_never_picked(saga_env: SagaTestEnv) -> None:      # the pytest fixture
        saga_env.register(payments, inventory, shipping, notifications, ops)
        order = await saga_env.start("order", "o-1", {...})
        assert await order.result() == {...}     # the 24-hour wait passed in virtual time

``SagaTestEnv`` runs the coordinator's own engine, codec and effects and the services'
own answering code; ``load_history``, ``load_journal`` and ``assert_replays`` replay
histories recorded on a cluster, with `saga verify-replay`'s code. The pytest plugin
(``saga.testing.plugin``, registered by the package) provides the ``saga_env`` fixture.
Production code never imports this package.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

__all__ = [
    "DeadLetter",
    "History",
    "Reply",
    "SagaParkedError",
    "SagaStalled",
    "SagaTestEnv",
    "SagaTestHandle",
    "ScheduledTimer",
    "SentCommand",
    "UnhandledCommand",
    "assert_replays",
    "load_history",
    "load_journal",
    "replay",
]

# Loaded on first use: pytest imports the plugin (saga.testing.plugin, hence this
# package) in every run of a project that installed kafka-saga, tests of sagas or not.
_WHERE = {
    "DeadLetter": "saga.testing.env", "SagaTestEnv": "saga.testing.env",
    "SagaTestHandle": "saga.testing.env", "ScheduledTimer": "saga.testing.env",
    "SentCommand": "saga.testing.env", "History": "saga.testing.histories",
    "assert_replays": "saga.testing.histories", "load_history": "saga.testing.histories",
    "load_journal": "saga.testing.histories", "replay": "saga.testing.histories",
    "Reply": "saga.testing.services", "SagaParkedError": "saga.errors",
    "SagaStalled": "saga.errors", "UnhandledCommand": "saga.errors",
}

if TYPE_CHECKING:
    from saga.errors import SagaParkedError, SagaStalled, UnhandledCommand
    from saga.testing.env import (
        DeadLetter,
        SagaTestEnv,
        SagaTestHandle,
        ScheduledTimer,
        SentCommand,
    )
    from saga.testing.histories import History, assert_replays, load_history, load_journal, replay
    from saga.testing.services import Reply


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'saga.testing' has no attribute {name!r}")
