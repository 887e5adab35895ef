"""Settling a message delivered by a real nats-server: the consumer span continues the trace
its producer put in the headers, and says how the message was settled (acked, retried)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from nats.aio.client import Client as NATS
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from genrail_cli.embedded import EmbeddedNats
from genrail_eventlog.consumers import ensure_consumer, settle
from genrail_eventlog.store import connect, ensure_streams
from genrail_events import jobs
from genrail_events.envelope import Event

TRACE_ID, SPAN_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7


@pytest.fixture(scope="module")
async def nc(nats_server: EmbeddedNats) -> AsyncIterator[NATS]:
    nc = await connect(nats_server.url, "consumer-spans")
    await ensure_streams(nc.jetstream())
    yield nc
    await nc.close()


@pytest.fixture
def spans() -> InMemorySpanExporter:
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


async def delivered(nc: NATS, headers: dict[str, str]):
    """A job.created published with `headers`, delivered once through a durable consumer of its own."""
    js, job_id = nc.jetstream(), str(uuid.uuid4())
    durable = f"spans-{job_id[:8]}"
    await ensure_consumer(js, "JOBS", durable, [f"job.created.{job_id}"], max_deliver=3, ack_wait_s=30)
    await js.publish(f"job.created.{job_id}", jobs.job_created(job_id, "u1", jobs.JobType.copy, 1, {}).to_bytes(),
                     headers=headers)
    subscription = await js.pull_subscribe_bind(durable, stream="JOBS")
    [message] = await subscription.fetch(1, timeout=5)
    return js, durable, message


async def settled(js, durable: str):
    """The consumer once nothing awaits an ack (an ack is a plain publish: the server applies it a moment later)."""
    for _ in range(100):
        info = await js.consumer_info("JOBS", durable)
        if info.num_ack_pending == 0:
            return info
        await asyncio.sleep(0.02)
    raise AssertionError(f"{durable}: still {info.num_ack_pending} awaiting an ack")


def _one(spans: InMemorySpanExporter, name: str) -> ReadableSpan:
    [found] = [s for s in spans.get_finished_spans() if s.name == name]
    return found


async def test_a_settled_message_is_a_consumer_span_child_of_its_producer(nc, spans):
    js, durable, message = await delivered(nc, {"traceparent": f"00-{TRACE_ID:032x}-{SPAN_ID:016x}-01"})
    seen: list[int] = []

    async def work(_event: Event) -> None:
        seen.append(trace.get_current_span().get_span_context().trace_id)

    await settle(message, js, consumer=durable, max_deliver=3, work=work)
    consumer = _one(spans, f"process {durable}")
    assert consumer.kind is SpanKind.CONSUMER
    assert (consumer.context.trace_id, consumer.parent.span_id) == (TRACE_ID, SPAN_ID)
    assert seen == [TRACE_ID]  # the work runs inside the consumer span
    assert consumer.attributes["messaging.consumer.group.name"] == durable
    assert consumer.attributes["genrail.stream.seq"] == message.metadata.sequence.stream
    assert consumer.attributes["genrail.settled"] == "acked"
    assert consumer.status.status_code is StatusCode.UNSET
    info = await settled(js, durable)
    assert info.ack_floor.stream_seq == message.metadata.sequence.stream


async def test_a_failed_delivery_marks_its_consumer_span_as_an_error_and_is_delivered_again(nc, spans):
    js, durable, message = await delivered(nc, {})

    async def work(_event: Event) -> None:
        raise RuntimeError("provider down")

    await settle(message, js, consumer=durable, max_deliver=3, work=work)
    consumer = _one(spans, f"process {durable}")
    assert consumer.attributes["genrail.settled"] == "retried"
    assert consumer.status.status_code is StatusCode.ERROR and consumer.status.description == "provider down"
    assert consumer.parent is None  # a message without a trace context starts a trace
    subscription = await js.pull_subscribe_bind(durable, stream="JOBS")
    [again] = await subscription.fetch(1, timeout=5)  # naked with a backoff: it comes back
    assert (again.metadata.sequence.stream, again.metadata.num_delivered) == (message.metadata.sequence.stream, 2)
