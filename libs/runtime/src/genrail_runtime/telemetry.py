"""Traces and metrics of one process: `setup(service, settings)` once, at start.

Traces: a TracerProvider naming the service. Spans leave the process over OTLP/HTTP only
when OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set (the exporter
reads the other standard variables itself), sampled as the SDK does by default
(parent-based; OTEL_TRACES_SAMPLER changes it). Nothing is exported by default, and then
spans are not recorded either, though they still give the JSON logs their ids.
httpx is instrumented for the whole process; a FastAPI app and the SQLAlchemy engine are
instrumented by their composition root (`instrument_app`, `instrument_engine`). NATS is
ours: `EventStore.append` makes the PRODUCER span, `consumers.settle` the CONSUMER span.

Metrics: a MeterProvider that Prometheus reads, at `/metrics` of the HTTP services and on
METRICS_PORT of the workers.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import prometheus_client
from opentelemetry import metrics, trace
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased, Sampler
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)

from .settings import CommonSettings

if TYPE_CHECKING:
    from fastapi import FastAPI
    from sqlalchemy.ext.asyncio import AsyncEngine

OTLP_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
UNTRACED_URLS = "/healthz$,/metrics$"


def setup(service: str, settings: CommonSettings) -> TracerProvider:
    resource = Resource.create({"service.name": service, "service.namespace": "genrail"})
    processors = span_processors(service, settings)
    tracer_provider = TracerProvider(resource=resource, sampler=default_sampler(processors))
    for processor in processors:
        tracer_provider.add_span_processor(processor)
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=[PrometheusMetricReader()]))
    global _LIBRARIES_TRACED
    _LIBRARIES_TRACED = bool(processors)
    if _LIBRARIES_TRACED:  # imported only then: the instrumentations import what they wrap
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

        HTTPXClientInstrumentor().instrument()
    if settings.metrics_port:
        prometheus_client.start_http_server(settings.metrics_port, settings.metrics_host)
    return tracer_provider


# Library instrumentation (FastAPI, httpx, SQLAlchemy) wraps every request, call and
# statement: worth it when spans go somewhere, pure cost (a third of the API's throughput
# on 2 cores) when they do not. Our own spans on appends and deliveries are always made.
_LIBRARIES_TRACED = False


def default_sampler(processors: Sequence[SpanProcessor]) -> Sampler | None:
    """With nowhere for spans to go (and no OTEL_TRACES_SAMPLER), spans are made but not
    recorded: they still carry trace and span ids into the logs and across services, at a
    fraction of the cost (recording them cost two thirds of the throughput on 2 cores).
    Otherwise None: the SDK's default, parent-based, or what OTEL_TRACES_SAMPLER says."""
    if processors or os.environ.get("OTEL_TRACES_SAMPLER"):
        return None
    return ParentBased(ALWAYS_OFF)


def span_processors(service: str, settings: CommonSettings) -> list[SpanProcessor]:
    """Where finished spans go: over OTLP when the environment names an endpoint (the
    exporter reads the standard variables itself), and to the test file when asked."""
    processors: list[SpanProcessor] = []
    if any(os.environ.get(name) for name in OTLP_ENDPOINT_VARIABLES):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        processors.append(BatchSpanProcessor(OTLPSpanExporter()))
    if settings.telemetry_spans_dir is not None:
        path = settings.telemetry_spans_dir / f"{service}.jsonl"
        processors.append(SimpleSpanProcessor(JsonLinesSpanExporter(path)))
    return processors


def fastapi_telemetry() -> dict[str, bool]:
    """FastAPI's own telemetry (`FastAPI(telemetry=...)`): request spans only when spans go
    somewhere (as for the libraries above); its request-duration metrics always, on /metrics."""
    return {"tracing": _LIBRARIES_TRACED, "operation_spans": _LIBRARIES_TRACED, "metrics": True}


def instrument_app(app: FastAPI, *, serve_metrics: bool = True) -> None:
    """Trace the app's requests (a SERVER span each, continuing a caller's W3C context) and,
    unless the process serves them on a port of its own (METRICS_PORT: not public), serve
    the process's metrics at /metrics."""
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from starlette.requests import Request
    from starlette.responses import Response

    async def scrape(_request: Request) -> Response:
        return Response(prometheus_client.generate_latest(), media_type=prometheus_client.CONTENT_TYPE_LATEST)

    if _LIBRARIES_TRACED:
        FastAPIInstrumentor.instrument_app(app, excluded_urls=UNTRACED_URLS, exclude_spans=["receive", "send"])
    if serve_metrics:
        app.add_route("/metrics", scrape, methods=["GET"], include_in_schema=False)


def instrument_engine(engine: AsyncEngine) -> None:
    """A CLIENT span per statement. Only the first engine of a process is instrumented. The
    instrumentation declares SQLAlchemy < 2.1 but uses only its stable event API (engine
    events), which 2.1 keeps: its version check is skipped, and the tests see the spans."""
    if _LIBRARIES_TRACED:
        from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

        SQLAlchemyInstrumentor().instrument(engine=engine.sync_engine, skip_dep_check=True)


class JsonLinesSpanExporter(SpanExporter):
    """Every finished span as one JSON line appended to a file: how tests read the spans of
    processes they started."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.lock = path, threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = "".join(json.dumps(span_record(s), default=str) + "\n" for s in spans)
        with self.lock, self.path.open("a") as out:
            out.write(lines)
        return SpanExportResult.SUCCESS


def span_record(span: ReadableSpan) -> dict[str, object]:
    context = span.get_span_context()
    return {
        "name": span.name, "kind": span.kind.name, "service": span.resource.attributes.get("service.name"),
        "trace_id": _hex(context.trace_id, 32), "span_id": _hex(context.span_id, 16),
        "parent_span_id": _hex(span.parent.span_id, 16) if span.parent else None,
        "links": [{"trace_id": _hex(link.context.trace_id, 32), "span_id": _hex(link.context.span_id, 16),
                   "attributes": dict(link.attributes or {})} for link in span.links],
        "attributes": dict(span.attributes or {}), "status": span.status.status_code.name,
        "start_ns": span.start_time, "end_ns": span.end_time,
    }


def _hex(value: int, width: int) -> str:
    return format(value, f"0{width}x")
