"""OpenTelemetry traces of sagas, across every process a saga touches.

One trace per saga. Its spans, and who writes them:

- ``saga.start <type>``: whoever starts it (the client, the API, the CLI), the parent of
  everything else when the starter was itself traced; its W3C ``traceparent`` travels
  to the coordinator as a header of the inbox record and is kept in the saga's
  ``SagaStarted`` entry, so any coordinator that later decides for the saga finds it.
- ``saga <type>``: the saga, from its start to its end, written by the coordinator that
  decides the end.
- ``saga.decide <input>``: each decision, under the saga.
- ``saga.step <service>.<command>`` (``saga.compensate ...`` for a compensation): each
  attempt of each step, from its issue to its reply or timeout, under the saga. Its
  ``traceparent`` travels on the command record.
- ``saga.handle <service>.<command>``: the service's handler, under its step; the reply
  carries its ``traceparent`` back.

A saga and a step outlive any one process (a day-long wait, a coordinator replaced), so
their span ids are derived from the saga id and the command id (and, for an untraced
start, the trace id from the saga id): whichever process writes a span, the others
already pointed at the right id. Spans are written when their end is decided, with the
start time the journal recorded.

Off by default, at the cost of one check: traces are exported only when the standard
``OTEL_*`` variables ask for it (``OTEL_TRACES_EXPORTER=otlp`` or ``console``, or an
``OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT``), or ``SAGA_TRACE_FILE`` names a file for JSON
lines (tests, and a quick look without a collector).
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    TraceFlags,
    format_span_id,
    format_trace_id,
)

#: The W3C header name, on inbox, command and reply records.
TRACEPARENT = "traceparent"
_tracer: trace.Tracer | None = None
_ids: _ChosenIds | None = None
_provider: TracerProvider | None = None


def enabled() -> bool:
    return _tracer is not None


def configure(service_name: str) -> bool:
    """Turn tracing on for this process when the environment asks for it; whether on."""
    global _tracer, _ids, _provider
    if _tracer is not None:
        return True
    exporter = os.environ.get("OTEL_TRACES_EXPORTER", "").lower()
    file = os.environ.get("SAGA_TRACE_FILE")
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") \
        or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if exporter == "none" or not (file or endpoint or exporter in ("otlp", "console")):
        return False
    _ids = _ChosenIds()
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}),
                              id_generator=_ids)
    if file:
        provider.add_span_processor(SimpleSpanProcessor(_FileExporter(file)))
    if endpoint or exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    if exporter == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    atexit.register(provider.shutdown)
    _provider = provider
    _tracer = provider.get_tracer("kafka-saga")
    return True


# ---- the ids every process agrees on -------------------------------------------------------
def _derived(kind: str, key: str, size: int) -> int:
    value = int.from_bytes(hashlib.sha256(f"{kind}:{key}".encode()).digest()[:size], "big")
    return value or 1


def saga_span_id(saga_id: str) -> int:
    return _derived("saga", saga_id, 8)


def step_span_id(command_id: str) -> int:
    return _derived("step", command_id, 8)


def parse(traceparent: str) -> SpanContext | None:
    parts = traceparent.split("-")
    if len(parts) != 4 or len(parts[1]) != 32 or len(parts[2]) != 16:
        return None
    try:
        return SpanContext(int(parts[1], 16), int(parts[2], 16), is_remote=True,
                           trace_flags=TraceFlags(int(parts[3], 16)))
    except ValueError:
        return None


def _traceparent(context: SpanContext) -> str:
    return (f"00-{format_trace_id(context.trace_id)}-{format_span_id(context.span_id)}-"
            f"{int(context.trace_flags):02x}")


def saga_trace_id(saga_id: str, started_by: str) -> int:
    parent = parse(started_by) if started_by else None
    return parent.trace_id if parent is not None else _derived("trace", saga_id, 16)


def saga_context(saga_id: str, started_by: str) -> SpanContext:
    """The saga's own span, as a parent (it is written only when the saga ends)."""
    return SpanContext(saga_trace_id(saga_id, started_by), saga_span_id(saga_id),
                       is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))


def saga_traceparent(saga_id: str, started_by: str) -> str:
    """The saga's own span as a traceparent: what a child it starts hangs under."""
    return _traceparent(saga_context(saga_id, started_by))


def step_traceparent(saga_id: str, started_by: str, command_id: str) -> str:
    """What a command record carries: its step's span, the parent of the handler's."""
    return _traceparent(SpanContext(saga_trace_id(saga_id, started_by),
                                    step_span_id(command_id), is_remote=True,
                                    trace_flags=TraceFlags(TraceFlags.SAMPLED)))


# ---- writing spans -------------------------------------------------------------------------
def _under(context: SpanContext | None) -> Any:
    return trace.set_span_in_context(NonRecordingSpan(context)) if context else None


def record(name: str, *, parent: SpanContext | None, start_ms: int, end_ms: int,
           attributes: dict[str, Any], span_id: int | None = None,
           trace_id: int | None = None, kind: SpanKind = SpanKind.INTERNAL,
           error: str | None = None) -> None:
    """A span that already ended, with the ids every process derives for it."""
    if _tracer is None or _ids is None:
        return
    with _ids.choosing(span_id, trace_id):
        span = _tracer.start_span(name, context=_under(parent), kind=kind,
                                  attributes=attributes, start_time=start_ms * 1_000_000)
    if error:
        span.set_status(trace.Status(trace.StatusCode.ERROR, error))
    span.end(end_time=max(start_ms, end_ms) * 1_000_000)


@contextmanager
def span(name: str, *, parent: SpanContext | str | None = None,
         attributes: dict[str, Any] | None = None,
         kind: SpanKind = SpanKind.INTERNAL) -> Iterator[str | None]:
    """A span around the block, under ``parent`` (a context or a traceparent; None: the
    current span); yields the block's own traceparent to pass on, or None when nothing
    traces. In a process kafka-saga did not configure (an application using the
    client), the application's own tracer provider is used, if it set one."""
    tracer = _tracer or trace.get_tracer("kafka-saga")
    if isinstance(parent, str):
        parent = parse(parent)
    context = _under(parent) if parent is not None else None
    with tracer.start_as_current_span(name, context=context, kind=kind,
                                      attributes=attributes or {}) as current:
        own = current.get_span_context()
        yield _traceparent(own) if own.is_valid else None


_UNTRACED: AbstractContextManager[str | None] = nullcontext()


def decision(saga_id: str, kind: str, partition: int, offset: int,
             started_by: Callable[[], str]) -> AbstractContextManager[str | None]:
    """The span of one decision, under its saga. When tracing is off it is a shared
    context that does nothing: no attributes built, no parent derived, no tracer asked
    (the coordinator enters one per input)."""
    if _tracer is None:
        return _UNTRACED
    return span(f"saga.decide {kind}", parent=saga_context(saga_id, started_by()),
                attributes={"saga.id": saga_id, "kafka.partition": partition,
                            "kafka.offset": offset})


def header(headers: Sequence[tuple[str, Any]] | None) -> str:
    """The traceparent among a record's headers ("" when none)."""
    for key, value in headers or ():
        if key == TRACEPARENT and value:
            return value.decode() if isinstance(value, bytes) else str(value)
    return ""


class _ChosenIds(RandomIdGenerator):
    """Random ids, except for a span whose id every process derives (``choosing``)."""

    def __init__(self) -> None:
        self._chosen = threading.local()

    @contextmanager
    def choosing(self, span_id: int | None, trace_id: int | None) -> Iterator[None]:
        self._chosen.span, self._chosen.trace = span_id, trace_id
        try:
            yield
        finally:
            self._chosen.span = self._chosen.trace = None

    def generate_span_id(self) -> int:
        chosen = getattr(self._chosen, "span", None)
        return chosen if chosen else super().generate_span_id()

    def generate_trace_id(self) -> int:
        chosen = getattr(self._chosen, "trace", None)
        return chosen if chosen else super().generate_trace_id()


class _FileExporter(SpanExporter):
    """One JSON object a line: the span's name, ids, parent, times, attributes, and the
    service that wrote it. Appends are small and atomic, so processes can share a file."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = []
        for done in spans:
            context = done.get_span_context()
            if context is None:
                continue
            lines.append(json.dumps({
                "name": done.name, "trace_id": format_trace_id(context.trace_id),
                "span_id": format_span_id(context.span_id),
                "parent_id": format_span_id(done.parent.span_id) if done.parent else None,
                "service": done.resource.attributes.get("service.name"),
                "start_ns": done.start_time, "end_ns": done.end_time,
                "attributes": dict(done.attributes or {}),
                "status": done.status.status_code.name}))
        with self._lock, open(self._path, "a", encoding="utf-8") as out:
            out.write("".join(f"{line}\n" for line in lines))
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def shutdown() -> None:
    """Flush and turn tracing off again in this process (tests, embedding)."""
    global _tracer, _ids, _provider
    if _provider is not None:
        _provider.shutdown()
    _tracer, _ids, _provider = None, None, None
