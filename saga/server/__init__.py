"""`saga server`: the visibility service. Its own index of every saga, fed by
saga.journal and saga.dlq, behind an HTTP API (and, later, the web console)."""

from __future__ import annotations

import socket
import sys

import uvicorn

from saga.config import Settings
from saga.engine.workflow import WorkflowRegistry
from saga.server.api import create_app
from saga.server.visibility import Visibility

#: Headroom over the largest JSON body for the request's own fields.
BODY_OVERHEAD = 64 * 1024


def serve(settings: Settings, *, registry: WorkflowRegistry | None = None,
          instance_id: str | None = None) -> None:
    """Serve until SIGTERM or SIGINT on ``settings.server_host:server_port``."""
    # The event loop answers every request, /healthz included, while the index's reading
    # threads run Python (a listing's filter): with the GIL handed over every 1 ms rather
    # than 5 ms, a request waits that much less behind them.
    sys.setswitchinterval(0.001)
    visibility = Visibility(settings, instance_id=instance_id or socket.gethostname(),
                            known_types=registry.names() if registry else ())
    app = create_app(visibility, max_body_bytes=settings.max_payload_bytes + BODY_OVERHEAD)
    config = uvicorn.Config(app, host=settings.server_host, port=settings.server_port,
                            log_level="warning", access_log=False, lifespan="on")
    uvicorn.Server(config).run()
