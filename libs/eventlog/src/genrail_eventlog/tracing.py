"""W3C trace context through NATS headers, so one trace follows a job across services.

Every append is a PRODUCER span whose context rides in the message's headers (and so stays
on the log with the event); every durable consumer handles a message in a CONSUMER span
whose parent is that producer. Work that starts outside the job's trace (a provider's
callback, a deadline) continues it from the headers of the job's last event: `continue_from`.
"""

from __future__ import annotations

import functools

from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

TRACER = "genrail"
MESSAGING_SYSTEM = "nats"


def inject(headers: MutableMapping[str, str]) -> None:
    propagate.inject(headers)


def extract(headers: Mapping[str, str] | None) -> otel_context.Context:
    return propagate.extract(dict(headers or {}))


@functools.cache
def tracer(name: str = TRACER) -> trace.Tracer:
    """One tracer per name for the process (the SDK builds a new one on every get_tracer,
    which profiled as a tenth of a worker's CPU). Before a provider is set this is a proxy
    that follows the provider set later, so caching it is safe."""
    return trace.get_tracer(name)


def span_context_of(headers: Mapping[str, str] | None) -> trace.SpanContext:
    """The span that published a message with these headers (invalid when there is none)."""
    return trace.get_current_span(extract(headers)).get_span_context()


@contextmanager
def traced(name: str, *, kind: SpanKind = SpanKind.INTERNAL, parent: otel_context.Context | None = None,
           links: list[Link] | None = None, attributes: Mapping[str, AttributeValue] | None = None,
           expected: tuple[type[BaseException], ...] = ()) -> Iterator[Span]:
    """A current span. An exception marks it as an error, except an `expected` one, which
    is an outcome (an optimistic-concurrency conflict, a deferral) and is only named."""
    with tracer().start_as_current_span(name, context=parent, kind=kind, links=links, attributes=attributes,
                                        record_exception=False, set_status_on_exception=False) as span:
        try:
            yield span
        except expected as exc:
            span.set_attribute("genrail.outcome", type(exc).__name__)
            raise
        except Exception as exc:
            mark_failed(span, exc)
            raise


def mark_failed(span: Span, exc: BaseException, description: str | None = None) -> None:
    span.record_exception(exc)
    span.set_attribute("error.type", type(exc).__qualname__)
    span.set_status(Status(StatusCode.ERROR, description or str(exc) or type(exc).__name__))


def publishing(subject: str, event_type: str, msg_id: str, body_size: int,
               expected: tuple[type[BaseException], ...] = ()):
    """The PRODUCER span of one append; inject the headers inside it."""
    return traced(f"publish {event_type}", kind=SpanKind.PRODUCER, expected=expected, attributes={
        "messaging.system": MESSAGING_SYSTEM, "messaging.operation.type": "send",
        "messaging.operation.name": "publish", "messaging.destination.name": subject,
        "messaging.message.id": msg_id, "messaging.message.body.size": body_size,
        "genrail.event.type": event_type})


def consuming(subject: str, headers: Mapping[str, str] | None, consumer: str, *, stream_seq: int,
              num_delivered: int, body_size: int):
    """The CONSUMER span of one delivery, child of the span that published the message."""
    return traced(f"process {consumer}", kind=SpanKind.CONSUMER, parent=extract(headers), attributes={
        "messaging.system": MESSAGING_SYSTEM, "messaging.operation.type": "process",
        "messaging.operation.name": "process", "messaging.destination.name": subject,
        "messaging.consumer.group.name": consumer, "messaging.message.body.size": body_size,
        "genrail.stream.seq": stream_seq, "genrail.delivery": num_delivered})


@contextmanager
def continue_from(headers: Mapping[str, str] | None, name: str,
                  attributes: Mapping[str, AttributeValue] | None = None) -> Iterator[Span]:
    """A span in the trace of the message these headers came with (a job's last event),
    for work that started elsewhere. The current span (the provider's callback request,
    which began a trace of its own) and the new span link to each other. Without a trace
    context in the headers, the span simply continues the current trace."""
    origin = span_context_of(headers)
    current = trace.get_current_span()
    if not origin.is_valid:
        with traced(name, attributes=attributes) as span:
            yield span
        return
    current.add_link(origin, {"genrail.link": "continued in"})
    links = [Link(current.get_span_context(), {"genrail.link": "started by"})] \
        if current.get_span_context().is_valid else []
    with traced(name, parent=trace.set_span_in_context(trace.NonRecordingSpan(origin)), links=links,
                attributes=attributes) as span:
        yield span
