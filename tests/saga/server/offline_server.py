"""`saga server`'s app over an index on disk with no Kafka behind it, served by uvicorn in
a process of its own: what a caller meets is the real HTTP API (routes, guards, error
bodies, the index's threads), and the tests attack it from outside, over sockets. The
inputs it would have produced to saga.inbox are written one JSON line each to
``SENT`` instead, so a test can tell whether a request acted.

    python -m tests.saga.server.offline_server INDEX_DIR PORT SENT_FILE
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import uvicorn

from saga.config import Settings
from saga.engine.inputs import Input
from saga.kafka.inbox import check_saga_id
from saga.kafka.records import RecordCodec
from saga.server import BODY_OVERHEAD
from saga.server.api import create_app
from saga.server.feed import FeedStatus
from saga.server.recent import RecentActivity
from saga.server.visibility import Started, Visibility
from saga.store.visibility import VisibilityIndex


class _Feed:
    def __init__(self) -> None:
        self.status = FeedStatus(ready=True)
        self.recent = RecentActivity()

    def start(self) -> None:
        """Nothing to tail: the index is all there is."""


class OfflineVisibility(Visibility):
    """Visibility over ``index`` whose inputs go to ``sent`` (a JSON-lines file)."""

    def __init__(self, settings: Settings, index: VisibilityIndex, sent: Path) -> None:
        self.settings = settings
        self.instance_id = "offline"
        self.known_types = ["order"]
        self.start_wait_s = 0.1
        self.index = index
        self.feed = _Feed()  # type: ignore[assignment]
        self._sent = sent
        self._codec = RecordCodec.for_settings(settings)
        self._loop = None
        self._waiting = {}
        self._waiters = 0
        self._readers = None
        self._scanners = None

    def stop(self) -> None:
        self.index.close()

    async def send(self, saga_id: str, value: Input) -> None:
        check_saga_id(saga_id)
        self._codec.encode_inbox(saga_id, value)  # what it refuses, the API refuses
        with self._sent.open("ab") as out:
            out.write(orjson.dumps({"saga_id": saga_id, "input": type(value).__name__,
                                    "value": repr(value)}) + b"\n")

    async def start_saga(self, saga_id: str, saga_type: str, saga_input: Any) -> Started:
        known = await self.read(self.index.summary, saga_id)
        if known is not None:
            return Started(False, None)
        async with self.waiting():
            with self._sent.open("ab") as out:
                out.write(orjson.dumps({"saga_id": saga_id, "input": "StartSaga"}) + b"\n")
            await asyncio.sleep(self.start_wait_s)
        return Started(None, None)


def sent(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def offline_server(index_dir: Path, sent_file: Path, env: dict[str, str] | None = None
                   ) -> Iterator[str]:
    """The server on a free loopback port, its base URL while the block runs."""
    port = free_port()
    log = index_dir.parent / f"offline-server-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.saga.server.offline_server", str(index_dir),
             str(port), str(sent_file)], stdout=out, stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the offline server did not start:\n{log.read_text()}")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main() -> None:
    index_dir, port, sent_file = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
    sys.setswitchinterval(0.001)  # as saga.server.serve does
    settings = Settings.from_env(server_port=port)
    visibility = OfflineVisibility(settings, VisibilityIndex(index_dir), sent_file)
    app = create_app(visibility, max_body_bytes=settings.max_payload_bytes + BODY_OVERHEAD)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False,
                lifespan="on")


if __name__ == "__main__":
    main()
