"""The budget of one decision: what a workflow may do before its saga is parked, so that
one buggy workflow (an endless loop, a runaway fan-out, a value too big to journal)
cannot hang or swamp the coordinator that runs every other saga.

Each limit is configurable (``Decider(budget=...)``, the coordinator's settings). The
wall-time limit interrupts a workflow stuck in Python code through SIGALRM, so it holds
only where the decider runs on the main thread (the coordinator); everywhere else the
event and fan-out limits still stop a loop that keeps calling ``ctx``.
"""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import dataclass
from types import FrameType
from typing import Any

import orjson


@dataclass(frozen=True)
class RunBudget:
    #: Journal entries one decision may write.
    max_events: int = 10_000
    #: Commands one decision may issue (the fan-out of a ctx.gather).
    max_commands: int = 2_000
    #: Journal entries one saga may hold; past it the saga parks.
    max_history: int = 100_000
    #: Wall time of one activation of a workflow, in seconds (0: no limit).
    max_seconds: float = 5.0
    #: Largest JSON value a ctx.* call may record or a workflow may return, in bytes.
    max_value_bytes: int = 512 * 1024
    #: Signals a saga may hold that no wait has taken yet; more are dead-lettered.
    max_pending_signals: int = 1_000


class BudgetExceeded(BaseException):
    """A control-flow signal, not an error anyone catches: raised inside a workflow's
    run when the decision is over budget. A BaseException, so a workflow's
    ``except Exception`` cannot swallow it."""


def encoded_size(value: Any) -> int:
    """Bytes of ``value`` as JSON; TypeError when it is not JSON (a set, a Decimal, an
    integer beyond 64 bits)."""
    return len(orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS))


class wall_clock:
    """Raise BudgetExceeded in this thread once ``seconds`` pass (main thread only).

    The SIGALRM handler is installed once and left in place (installing and restoring
    it per activation was a tenth of the coordinator's time); it acts only while a
    budget is armed and hands any other alarm to the handler it replaced."""

    _armed: str | None = None  # the message of the running budget, if one runs
    _replaced: Any = None  # the SIGALRM handler found when ours went in

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._active = seconds > 0 and threading.current_thread() is threading.main_thread()
        self._pending = 0.0
        self._interval = 0.0
        self._began = 0.0

    def __enter__(self) -> None:
        if not self._active:
            return
        if _current_handler(signal.SIGALRM) is not _expire:
            wall_clock._replaced = signal.signal(signal.SIGALRM, _expire)
        wall_clock._armed = (f"the workflow ran for more than {self._seconds:g}s in one "
                             "activation (an endless loop?)")
        self._began = time.monotonic()
        # One shot: a timer that repeated could outlive this block if its alarm landed
        # in the clean-up. (So a workflow that swallows BaseException in a loop that
        # never calls ctx is interrupted once only; the event budget stops any loop that
        # calls ctx.)
        self._pending, self._interval = signal.setitimer(signal.ITIMER_REAL, self._seconds)

    def __exit__(self, *exc: object) -> None:
        if not self._active:
            return
        try:
            signal.setitimer(signal.ITIMER_REAL, 0)
        finally:
            wall_clock._armed = None
            if self._pending > 0:  # someone else's alarm (a test runner's): put it back
                left = max(self._pending - (time.monotonic() - self._began), 0.001)
                signal.setitimer(signal.ITIMER_REAL, left, self._interval)


try:
    # signal.getsignal wraps the C function's answer in an enum, which for a Python
    # handler means an Enum lookup that raises and is caught: per activation that was
    # 4% of the coordinator. The handler itself is all this needs.
    from _signal import getsignal as _current_handler  # type: ignore[import-not-found]
except ImportError:  # another interpreter
    _current_handler = signal.getsignal


def _expire(signum: int, frame: FrameType | None) -> None:
    message = wall_clock._armed
    if message is not None:
        wall_clock._armed = None
        raise BudgetExceeded(message)
    replaced = wall_clock._replaced
    if callable(replaced):  # not ours: the alarm of whoever had the signal before
        replaced(signum, frame)
