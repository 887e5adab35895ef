"""Durable work consumers: their configuration, settling a message, and dead letters.

Each service declares its durable consumers once, in a table of `DurableConsumer`s;
`declare_consumers` creates or updates each one at start-up and reads it in a pull loop.
A message is acked after its effects are on the log; a failure naks it with a backoff (or
the delay a provider asked for); the last allowed delivery that fails goes to `DLQ` with
the reason, and is then terminated.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from opentelemetry.trace import Span

from genrail_events import subjects
from genrail_events.envelope import Event

from . import tracing
from .store import MSG_ID, dumps

log = logging.getLogger("genrail.consumers")


async def ensure_consumer(js: JetStreamContext, stream: str, durable: str, filter_subjects: list[str], *,
                          max_deliver: int, ack_wait_s: float = 30.0, max_ack_pending: int = 1000) -> None:
    await js.add_consumer(stream, consumer_config(durable, filter_subjects, max_deliver=max_deliver,
                                                  ack_wait_s=ack_wait_s, max_ack_pending=max_ack_pending))


def consumer_config(durable: str, filter_subjects: Sequence[str], *, max_deliver: int, ack_wait_s: float = 30.0,
                    max_ack_pending: int = 1000) -> ConsumerConfig:
    config = ConsumerConfig(durable_name=durable, deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.EXPLICIT,
                            ack_wait=ack_wait_s, max_deliver=max_deliver, max_ack_pending=max_ack_pending)
    if len(filter_subjects) == 1:
        config.filter_subject = filter_subjects[0]
    else:
        config.filter_subjects = list(filter_subjects)
    return config


class Retry(Exception):
    """Try this message again later (after `delay_s`), counting it as a failed delivery."""

    def __init__(self, reason: str, delay_s: float | None = None):
        super().__init__(reason)
        self.delay_s = delay_s


class Defer(Exception):
    """Not now (no capacity): deliver again after `delay_s`. Not a failure."""

    def __init__(self, delay_s: float):
        super().__init__(f"deferred for {delay_s}s")
        self.delay_s = delay_s


class DeadLetter(Exception):
    """Give up on this message now: it goes to the DLQ with this reason."""


def backoff_s(num_delivered: int) -> float:
    return min(30.0, 0.5 * 2 ** (num_delivered - 1))


async def dead_letter(js: JetStreamContext, msg: Msg, *, consumer: str, reason: str) -> None:
    md = msg.metadata
    record = {"stream": md.stream, "consumer": consumer, "stream_seq": md.sequence.stream,
              "subject": msg.subject, "num_delivered": md.num_delivered, "reason": reason,
              "failed_at": datetime.now(UTC).isoformat(), "data": msg.data.decode(errors="replace"),
              "headers": dict(msg.headers or {})}
    headers = {MSG_ID: f"dlq:{md.stream}:{consumer}:{md.sequence.stream}"}
    tracing.inject(headers)
    await js.publish(subjects.dlq(md.stream, consumer), dumps(record), headers=headers)
    log.error("message.dead_lettered", extra={"consumer": consumer, "subject": msg.subject,
                                              "stream_seq": md.sequence.stream, "reason": reason})


async def settle(raw: Msg, js: JetStreamContext, *, consumer: str, max_deliver: int,
                 work: Callable[[Event], Awaitable[None]],
                 on_exhausted: Callable[[Event, str], Awaitable[None]] | None = None) -> None:
    """Run `work` on the message's event and ack, nak or dead-letter it, in a CONSUMER span
    that continues the trace of the append that published the message."""
    md = raw.metadata
    with tracing.consuming(raw.subject, raw.headers, consumer, stream_seq=md.sequence.stream,
                           num_delivered=md.num_delivered, body_size=len(raw.data)) as span:
        outcome = await _settle(raw, js, span, consumer=consumer, num_delivered=md.num_delivered,
                                max_deliver=max_deliver, work=work, on_exhausted=on_exhausted)
        span.set_attribute("genrail.settled", outcome)


async def _settle(raw: Msg, js: JetStreamContext, span: Span, *, consumer: str, num_delivered: int,
                  max_deliver: int, work: Callable[[Event], Awaitable[None]],
                  on_exhausted: Callable[[Event, str], Awaitable[None]] | None) -> str:
    try:
        event = Event.from_bytes(raw.data)
    except ValueError as exc:
        tracing.mark_failed(span, exc)
        await dead_letter(js, raw, consumer=consumer, reason=f"unreadable event: {exc}")
        await raw.term()
        return "dead_lettered"
    span.set_attribute("genrail.event.type", event.type)
    try:
        await work(event)
    except Defer as exc:
        await raw.nak(delay=exc.delay_s)
        return "deferred"
    except DeadLetter as exc:
        tracing.mark_failed(span, exc)
        await dead_letter(js, raw, consumer=consumer, reason=str(exc))
        await raw.term()
        return "dead_lettered"
    except Exception as exc:  # noqa: BLE001 - every failure is settled: retried or dead-lettered
        reason = str(exc) or type(exc).__name__
        tracing.mark_failed(span, exc, reason)
        if num_delivered >= max_deliver:
            if on_exhausted is not None:
                await on_exhausted(event, reason)
            await dead_letter(js, raw, consumer=consumer, reason=reason)
            await raw.term()
            return "dead_lettered"
        delay = exc.delay_s if isinstance(exc, Retry) and exc.delay_s is not None else backoff_s(num_delivered)
        if not isinstance(exc, Retry):
            log.warning("message.retry", exc_info=True,
                        extra={"consumer": consumer, "subject": raw.subject, "attempt": num_delivered})
        await raw.nak(delay=delay)
        return "retried"
    await raw.ack()
    return "acked"


@dataclass(frozen=True)
class DurableConsumer:
    """One durable pull consumer of a service, declared once: the JetStream consumer's
    configuration and the loop that reads it both come from here.

    `handler` gets each message's event and its JetStream metadata (stream sequence,
    deliveries); `settle` acks, naks or dead-letters the message from what it does.
    Up to `batch_size` messages are fetched per pull and up to `max_workers` (default:
    `batch_size`) are handled at once, in no particular order: every handler is safe to run
    concurrently with any other (the log's optimistic concurrency orders what they append).
    """

    stream: str
    durable: str
    filter_subjects: tuple[str, ...]
    handler: Callable[[Event, Msg.Metadata], Awaitable[None]]
    max_deliver: int
    ack_wait_s: float = 30.0
    batch_size: int = 100
    max_workers: int | None = None
    on_exhausted: Callable[[Event, str], Awaitable[None]] | None = None

    def config(self) -> ConsumerConfig:
        return consumer_config(self.durable, self.filter_subjects, max_deliver=self.max_deliver,
                               ack_wait_s=self.ack_wait_s)


async def declare_consumers(js: JetStreamContext, consumers: Sequence[DurableConsumer], *,
                            graceful_s: float = 30.0) -> list[Callable[[asyncio.Event], Awaitable[None]]]:
    """Create or update each durable consumer (a pull subscription does not apply its config
    to an existing durable); returns the loops that read them, to run until a stop event:
    a stop ends the fetches and waits up to `graceful_s` for the messages in hand."""
    for consumer in consumers:
        await js.add_consumer(consumer.stream, consumer.config())
    return [partial(pull, js, consumer, graceful_s=graceful_s) for consumer in consumers]


async def pull(js: JetStreamContext, consumer: DurableConsumer, stop: asyncio.Event, *,
               graceful_s: float = 30.0) -> None:
    """Fetch and settle the consumer's messages until `stop`.

    This is nats-py's pull subscription with a task per message, not FastStream's
    subscriber: profiled under load, FastStream's per-message path (dependency injection
    that resolves the message in a worker thread, its logging middleware) cost more CPU than
    the handlers themselves."""
    subscription = await js.pull_subscribe_bind(consumer.durable, stream=consumer.stream)
    capacity = consumer.max_workers or consumer.batch_size
    running: set[asyncio.Task[None]] = set()

    async def handle(raw: Msg) -> None:
        await settle(raw, js, consumer=consumer.durable, max_deliver=consumer.max_deliver,
                     work=lambda event: consumer.handler(event, raw.metadata), on_exhausted=consumer.on_exhausted)

    try:
        while not stop.is_set():
            room = capacity - len(running)
            if room <= 0:
                await asyncio.wait(running, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
                continue
            try:
                messages = await subscription.fetch(min(room, consumer.batch_size), timeout=1.0)
            except TimeoutError:
                continue  # nothing new within the second (nats-py's TimeoutError is one)
            except Exception:  # noqa: BLE001 - NATS away or the consumer gone: wait, then fetch again
                log.warning("consumer.fetch_failed", exc_info=True, extra={"consumer": consumer.durable})
                await _sleep_unless(stop, 1.0)
                continue
            for raw in messages:
                task = asyncio.ensure_future(handle(raw))
                running.add(task)
                task.add_done_callback(running.discard)
    finally:
        if running:
            _, unfinished = await asyncio.wait(running, timeout=graceful_s)
            for task in unfinished:  # not acked: redelivered after ack_wait
                task.cancel()
        try:
            await subscription.unsubscribe()
        except Exception:  # noqa: BLE001 - the connection may be closing already
            pass


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        pass
