"""The ledger service: credit policies on durable consumers. Its read models (balances and
entries) are projected by the projector, like every other table."""

from __future__ import annotations

import asyncio

from faststream import AckPolicy, FastStream
from faststream.nats import JStream, NatsBroker, NatsMessage, PullSub

from genrail_events import subjects
from genrail_runtime import logs, telemetry
from genrail_eventlog.consumers import ensure_consumer, settle
from genrail_eventlog.store import EventStore, connect, ensure_streams
from genrail_eventlog.lag import ConsumerLag

from . import policies
from .settings import LedgerSettings

POLICIES = {  # durable name: (stream, subject)
    "ledger-signup-grants": ("USERS", subjects.USER_REGISTERED_ALL),
    "ledger-refunds": ("JOBS", subjects.JOB_TRANSITIONED_ALL),
    "ledger-job-recovery": ("LEDGER", subjects.LEDGER_DEBITED_ALL),
    "ledger-purchases": ("PAYMENTS", "payment.succeeded.>"),
    "ledger-payment-reversals": ("PAYMENTS", "payment.reversed.>"),
}


def create_app(settings: LedgerSettings) -> FastStream:
    broker = NatsBroker(settings.nats_url, log_level=10, graceful_timeout=10)
    app = FastStream(broker)
    state: dict = {}
    stop = asyncio.Event()

    def subscriber(durable: str):
        stream, subject = POLICIES[durable]
        return broker.subscriber(subject, stream=JStream(stream, declare=False), durable=durable,
                                 pull_sub=PullSub(batch_size=100, timeout=1.0),
                                 ack_policy=AckPolicy.MANUAL)

    # Per-message handlers: FastStream handles one fetch's messages concurrently. Its batch
    # mode (batch=True) is avoided: its pull loop dies on the asyncio.TimeoutError nats-py
    # raises when a partial fetch runs out of time, stalling messages for the ack wait.
    async def run(msg: NatsMessage, durable: str, work) -> None:
        await settle(msg.raw_message, state["store"].js, consumer=durable,
                     max_deliver=settings.ledger_max_deliver, work=work)

    @subscriber("ledger-signup-grants")
    async def on_user_registered(msg: NatsMessage) -> None:
        await run(msg, "ledger-signup-grants",
                  lambda e: policies.grant_signup_credits(state["store"], e, settings.signup_credits))

    @subscriber("ledger-refunds")
    async def on_job_transitioned(msg: NatsMessage) -> None:
        await run(msg, "ledger-refunds", lambda e: policies.refund_ended_attempt(state["store"], e))

    @subscriber("ledger-job-recovery")
    async def on_debited(msg: NatsMessage) -> None:
        await run(msg, "ledger-job-recovery", lambda e: policies.create_job_from_debit(
                      state["store"], e, grace_s=settings.ledger_recovery_grace_s))

    @subscriber("ledger-purchases")
    async def on_payment_succeeded(msg: NatsMessage) -> None:
        await run(msg, "ledger-purchases", lambda e: policies.credit_purchase(state["store"], e))

    @subscriber("ledger-payment-reversals")
    async def on_payment_reversed(msg: NatsMessage) -> None:
        await run(msg, "ledger-payment-reversals", lambda e: policies.reverse_payment(state["store"], e))

    @app.on_startup
    async def prepare() -> None:
        logs.configure("ledger", settings.log_level)
        nc = await connect(settings.nats_url, "genrail-ledger")
        await ensure_streams(nc.jetstream(), replicas=settings.stream_replicas,
                             duplicate_window_s=settings.stream_duplicate_window_s)
        for durable, (stream, subject) in POLICIES.items():
            await ensure_consumer(nc.jetstream(), stream, durable, [subject], max_deliver=settings.ledger_max_deliver)
        state.update(nc=nc, store=EventStore(nc))
        lag = ConsumerLag(nc.jetstream(), [(stream, durable) for durable, (stream, _) in POLICIES.items()])
        state["lag"] = asyncio.create_task(lag.run(stop))

    @app.on_shutdown
    async def close() -> None:
        stop.set()
        await state["lag"]
        await state["nc"].drain()

    return app


def run() -> None:
    settings = LedgerSettings()
    telemetry.setup("ledger", settings)
    asyncio.run(create_app(settings).run())
