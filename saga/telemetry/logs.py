"""Logging for every kafka-saga process: kafka-saga's own lines from INFO, everything else
(librdkafka through ``saga.kafka``, aiokafka) from WARNING, on stderr.

``SAGA_LOG_FORMAT=json`` makes every line one JSON object: time, level, logger, message,
and the context the line was logged in (``instance``, ``saga_id``, ``partition``) as
``log_context`` sets it. A formatter of our own, on orjson: the context lives in
contextvars that no logging library knows about.
"""

from __future__ import annotations

import contextvars
import logging
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import orjson

_CONTEXT: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "saga_log_context", default=MappingProxyType({}))
#: Record attributes logging itself sets; anything else passed as ``extra`` is context.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class log_context:
    """Lines logged inside carry ``fields`` (in JSON logs), e.g. saga_id and partition.
    A class, not a generator: the coordinator enters one per decision."""

    __slots__ = ("_fields", "_token")

    def __init__(self, **fields: Any) -> None:
        self._fields = fields

    def __enter__(self) -> None:
        self._token = _CONTEXT.set({**_CONTEXT.get(), **self._fields})

    def __exit__(self, *exc: object) -> None:
        _CONTEXT.reset(self._token)


def set_process_context(**fields: Any) -> None:
    """Context for every line of this process from now on (its instance id)."""
    _CONTEXT.set({**_CONTEXT.get(), **fields})


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(), "logger": record.name,
            "message": record.getMessage(), **_CONTEXT.get()}
        line.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


_format = "text"


def json_lines() -> bool:
    """Whether this process logs JSON (then its other stderr output should too)."""
    return _format == "json"


def configure_logging(log_format: str | None = None, *, stream: Any = None) -> None:
    """Set up the root logger once per process (``log_format``: "text" or "json"; default
    SAGA_LOG_FORMAT, else text)."""
    chosen = (log_format or os.environ.get("SAGA_LOG_FORMAT") or "text").lower()
    if chosen not in ("text", "json"):
        chosen = "text"  # Settings.validate says so; logging must never fail
    global _format
    _format = chosen
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if chosen == "json"
                         else logging.Formatter("%(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("saga").setLevel(logging.INFO)
    logging.getLogger("saga.kafka").setLevel(logging.WARNING)


def quiet_kafka(log_file: Path) -> None:
    """librdkafka's and aiokafka's lines to ``log_file`` instead of the terminal (the
    demo: a retrying connection is no news to someone watching it)."""
    handler = logging.FileHandler(log_file)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
    for name in ("saga.kafka", "aiokafka"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.propagate = False
