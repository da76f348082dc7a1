"""The pytest plugin of kafka-saga, registered by the package (entry point ``pytest11``,
name ``saga``; ``-p no:saga`` turns it off), so ``pytest`` in a project that installed
kafka-saga finds it with no set-up:

- ``saga_env``: a fresh SagaTestEnv (every @workflow imported, default settings),
  closed after the test;
- ``saga_env_factory``: ``saga_env_factory(workflows=..., start_time=..., ...)`` makes
  more, each closed after the test;
- an ``async def`` test that asks for either runs on its own event loop, unless
  pytest-asyncio or anyio has claimed it (their marker), so it needs no plugin of
  its own.

It imports nothing of kafka-saga until a test asks for a fixture: a test run that does
not use it pays nothing.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from saga.testing.env import SagaTestEnv

_FIXTURES = ("saga_env", "saga_env_factory")
#: Markers of the async plugins that run a coroutine test themselves.
_CLAIMED_BY = ("asyncio", "anyio", "trio")


@pytest.fixture
def saga_env_factory() -> Iterator[Callable[..., SagaTestEnv]]:
    from saga.testing.env import SagaTestEnv

    made: list[SagaTestEnv] = []

    def make(*args: Any, **kwargs: Any) -> SagaTestEnv:
        env = SagaTestEnv(*args, **kwargs)
        made.append(env)
        return env

    yield make
    for env in made:
        env.close()


@pytest.fixture
def saga_env(saga_env_factory: Callable[..., SagaTestEnv]) -> SagaTestEnv:
    return saga_env_factory()


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run an ``async def`` test that uses a saga fixture, when no async plugin does."""
    test = pyfuncitem.obj
    if not inspect.iscoroutinefunction(test) \
            or not any(name in pyfuncitem.fixturenames for name in _FIXTURES) \
            or any(pyfuncitem.get_closest_marker(m) for m in _CLAIMED_BY):
        return None
    arguments = {name: pyfuncitem.funcargs[name]
                 for name in pyfuncitem._fixtureinfo.argnames}
    asyncio.run(test(**arguments))
    return True
