"""Trace context through NATS headers: injected by the producer, extracted by the consumer,
continued by work that starts elsewhere; and the JSON logs name the current span. No server
here: the consumer side, settling real deliveries, is tests/service/test_consumer_spans.py."""

from __future__ import annotations

import json
import logging

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from genrail_eventlog import tracing
from genrail_runtime.logs import JsonFormatter

TRACE_ID, SPAN_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7


@pytest.fixture(scope="module")
def provider() -> TracerProvider:
    """The process's tracer provider (set once per process), recording what the tests do."""
    current = trace.get_tracer_provider()
    if not isinstance(current, TracerProvider):
        current = TracerProvider()
        trace.set_tracer_provider(current)
    return current


@pytest.fixture(scope="module")
def recorded(provider: TracerProvider) -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


@pytest.fixture
def spans(recorded: InMemorySpanExporter) -> InMemorySpanExporter:
    recorded.clear()
    return recorded


def test_the_context_injected_into_message_headers_is_extracted_unchanged(provider):
    with provider.get_tracer("test").start_as_current_span("publish") as span:
        headers = {"Nats-Msg-Id": "job.created:1"}
        tracing.inject(headers)
    sent = span.get_span_context()
    assert headers["traceparent"] == f"00-{sent.trace_id:032x}-{sent.span_id:016x}-{sent.trace_flags:02x}"
    assert headers["Nats-Msg-Id"] == "job.created:1"
    received = tracing.span_context_of(headers)
    assert (received.trace_id, received.span_id, received.trace_flags, received.is_remote) == \
        (sent.trace_id, sent.span_id, sent.trace_flags, True)
    assert received.trace_flags.sampled


def test_an_unsampled_producer_stays_unsampled_downstream():
    received = tracing.span_context_of({"traceparent": f"00-{TRACE_ID:032x}-{SPAN_ID:016x}-00"})
    assert received.is_valid and not received.trace_flags.sampled


@pytest.mark.parametrize("headers", [None, {}, {"Nats-Msg-Id": "x"}, {"traceparent": "00-garbage-01"},
                                     {"traceparent": f"00-{0:032x}-{SPAN_ID:016x}-01"}])
def test_headers_without_a_valid_traceparent_give_no_context(headers):
    assert not tracing.span_context_of(headers).is_valid


def _one(spans: InMemorySpanExporter, name: str) -> ReadableSpan:
    [found] = [s for s in spans.get_finished_spans() if s.name == name]
    return found


def test_work_continued_from_a_jobs_last_event_joins_its_trace_and_links_both_ways(provider, spans):
    job_event = {"traceparent": f"00-{TRACE_ID:032x}-{SPAN_ID:016x}-01"}
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("POST /webhooks/replicate", kind=SpanKind.SERVER), \
            tracing.continue_from(job_event, "replicate.prediction"), tracing.traced("inside"):
        pass
    applied, callback = _one(spans, "replicate.prediction"), _one(spans, "POST /webhooks/replicate")
    assert (applied.context.trace_id, applied.parent.span_id) == (TRACE_ID, SPAN_ID)
    assert [link.context.span_id for link in applied.links] == [callback.context.span_id]
    assert [(link.context.trace_id, link.context.span_id) for link in callback.links] == [(TRACE_ID, SPAN_ID)]
    assert _one(spans, "inside").parent.span_id == applied.context.span_id


def test_without_a_context_on_the_log_the_work_continues_the_current_trace(provider, spans):
    with provider.get_tracer("test").start_as_current_span("request") as request:
        with tracing.continue_from({}, "replicate.prediction"):
            pass
    applied = _one(spans, "replicate.prediction")
    assert applied.parent.span_id == request.get_span_context().span_id and not applied.links


def test_an_expected_exception_is_an_outcome_and_any_other_an_error(spans):
    with pytest.raises(KeyError), tracing.traced("append", expected=(KeyError,)):
        raise KeyError("conflict")
    with pytest.raises(ValueError), tracing.traced("broken", expected=(KeyError,)):
        raise ValueError("boom")
    assert _one(spans, "append").status.status_code is StatusCode.UNSET
    assert _one(spans, "append").attributes["genrail.outcome"] == "KeyError"
    assert _one(spans, "broken").status.status_code is StatusCode.ERROR


def test_a_json_log_line_names_the_current_trace_and_span(provider):
    record = logging.LogRecord("genrail.test", logging.INFO, __file__, 1, "job.created", (), None)
    with provider.get_tracer("test").start_as_current_span("work") as span:
        line = json.loads(JsonFormatter("api").format(record))
    context = span.get_span_context()
    assert (line["trace_id"], line["span_id"]) == (f"{context.trace_id:032x}", f"{context.span_id:016x}")
    assert "trace_id" not in json.loads(JsonFormatter("api").format(record))  # no span, no ids
