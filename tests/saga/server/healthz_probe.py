"""GET /healthz every ``interval`` seconds for ``seconds`` seconds, over one kept-alive
connection, and print each latency in ms as a JSON list: a process of its own, so that
nothing the test does (a browser driver, JSON parsing) is counted in the figures.

    python -m tests.saga.server.healthz_probe URL SECONDS INTERVAL
"""

from __future__ import annotations

import sys
import time

import httpx
import orjson


def main() -> None:
    url, seconds, interval = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    took: list[float] = []
    failed = 0
    with httpx.Client(timeout=10) as client:
        client.get(f"{url}/healthz")  # the connection, made before the clock runs
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            started = time.perf_counter()
            status = client.get(f"{url}/healthz").status_code
            took.append((time.perf_counter() - started) * 1000)
            failed += status != 200
            time.sleep(interval)
    sys.stdout.write(orjson.dumps({"ms": took, "failed": failed}).decode())


if __name__ == "__main__":
    main()
