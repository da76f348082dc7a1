"""How many cases each fuzz test runs: a short run in `make test`, many in `make fuzz`
(FUZZ_EXAMPLES=<per test>; the Makefile's fuzz target sets it so the suite runs more
than 100,000 cases)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings


def fuzz(short: int = 200, *, weight: float = 1.0) -> settings:
    """``weight``: this test's share of FUZZ_EXAMPLES (slow cases get less)."""
    many = os.environ.get("FUZZ_EXAMPLES")
    examples = max(1, int(int(many) * weight)) if many else short
    return settings(max_examples=examples, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.data_too_large])
