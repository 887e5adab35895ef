"""Where a process's spans go: nowhere by default, over OTLP/HTTP when an endpoint is
configured, to a JSON-lines file when a test asks."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Link, SpanKind

from genrail_runtime.settings import CommonSettings
from genrail_runtime.telemetry import OTLP_ENDPOINT_VARIABLES, span_processors


@pytest.fixture(autouse=True)
def no_otlp_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in OTLP_ENDPOINT_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def provider_for(service: str, settings: CommonSettings) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    for processor in span_processors(service, settings):
        provider.add_span_processor(processor)
    return provider


def test_nothing_is_exported_by_default():
    assert span_processors("api", CommonSettings(telemetry_spans_dir=None)) == []


class _Collector(BaseHTTPRequestHandler):
    received: list[tuple[str, str, bytes]] = []

    def do_POST(self) -> None:  # noqa: N802 - the http.server API
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.path, self.headers["Content-Type"], body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *_args) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[tuple[str, list]]:
    _Collector.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Collector.received
    server.shutdown()


@pytest.mark.parametrize("variable, suffix", [("OTEL_EXPORTER_OTLP_ENDPOINT", ""),
                                              ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "/v1/traces")])
def test_spans_go_over_otlp_http_to_the_configured_endpoint(collector, monkeypatch, variable, suffix):
    url, received = collector
    monkeypatch.setenv(variable, url + suffix)
    provider = provider_for("pipeline", CommonSettings(telemetry_spans_dir=None))
    with provider.get_tracer("test").start_as_current_span("process pipeline", kind=SpanKind.CONSUMER):
        pass
    assert provider.force_flush(5_000)
    [(path, content_type, body)] = received
    assert (path, content_type) == ("/v1/traces", "application/x-protobuf")
    request = ExportTraceServiceRequest.FromString(body)
    [resource_spans] = request.resource_spans
    service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}["service.name"]
    assert service == "pipeline"
    assert [s.name for scope in resource_spans.scope_spans for s in scope.spans] == ["process pipeline"]
    provider.shutdown()


def test_a_test_run_gets_every_span_as_a_json_line_with_its_parent_and_links(tmp_path: Path):
    provider = provider_for("webhooks", CommonSettings(telemetry_spans_dir=tmp_path / "spans"))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("POST /webhooks/replicate", kind=SpanKind.SERVER) as request:
        with tracer.start_as_current_span("replicate.prediction", links=[Link(request.get_span_context())]):
            pass
    lines = [json.loads(line) for line in (tmp_path / "spans" / "webhooks.jsonl").read_text().splitlines()]
    applied, callback = lines
    assert (applied["name"], applied["service"], applied["kind"]) == \
        ("replicate.prediction", "webhooks", "INTERNAL")
    assert applied["parent_span_id"] == callback["span_id"] and callback["parent_span_id"] is None
    [link] = applied["links"]
    assert (link["trace_id"], link["span_id"]) == (callback["trace_id"], callback["span_id"])
    assert len(callback["trace_id"]) == 32 and len(callback["span_id"]) == 16
