"""The ledger's composition root: its one NATS connection, its store, and the table of its
durable consumers (one per policy), opened and closed in one place."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from faststream.nats import NatsBroker
from nats.aio.client import Client as NATS

from genrail_events import jobs, subjects
from genrail_eventlog.consumers import DurableConsumer, declare_consumers
from genrail_eventlog.lag import ConsumerLag
from genrail_eventlog.store import CONNECT_OPTIONS, EventStore, ensure_streams
from genrail_runtime.background import Background

from . import policies
from .settings import LedgerSettings


@dataclass(frozen=True)
class Ledger:
    """What the ledger's policies run on."""

    settings: LedgerSettings
    nc: NATS  # the broker's own connection: the process's only one
    store: EventStore


def broker(settings: LedgerSettings) -> NatsBroker:
    """The process's NATS connection. FastStream logs each message at log_level (DEBUG),
    below the service's level; graceful_timeout is how long shutdown waits for handlers."""
    return NatsBroker(settings.nats_url, name="genrail-ledger", **CONNECT_OPTIONS, log_level=10,
                      graceful_timeout=10)


def consumers(ledger: Ledger) -> list[DurableConsumer]:
    """Every durable consumer of the ledger: one per policy."""
    settings, store = ledger.settings, ledger.store

    def policy(stream: str, durable: str, subject: str | tuple[str, ...], handler) -> DurableConsumer:
        filters = (subject,) if isinstance(subject, str) else subject
        return DurableConsumer(stream, durable, filters, handler=lambda event, _delivery: handler(event),
                               max_deliver=settings.ledger_max_deliver)

    return [
        policy("USERS", "ledger-signup-grants", subjects.USER_REGISTERED_ALL,
               lambda event: policies.grant_signup_credits(store, event, settings.signup_credits)),
        policy("JOBS", "ledger-refunds", subjects.job_transitions_to(*sorted(jobs.REFUNDED_STATUSES)),
               lambda event: policies.refund_ended_attempt(store, event)),
        policy("LEDGER", "ledger-job-recovery", subjects.LEDGER_DEBITED_ALL,
               lambda event: policies.create_job_from_debit(store, event,
                                                            grace_s=settings.ledger_recovery_grace_s,
                                                            wait_s=settings.ledger_recovery_grace_s)),
        policy("PAYMENTS", "ledger-purchases", "payment.succeeded.>",
               lambda event: policies.credit_purchase(store, event)),
        policy("PAYMENTS", "ledger-payment-reversals", "payment.reversed.>",
               lambda event: policies.reverse_payment(store, event)),
    ]


@asynccontextmanager
async def open_ledger(settings: LedgerSettings, broker: NatsBroker,
                      background: Background) -> AsyncIterator[Ledger]:
    """Connect the broker, make sure the streams and the consumers exist, subscribe to the
    consumers and start reading their lag. Run before the broker starts; the broker drains
    the connection when it stops."""
    nc = await broker.connect()
    ledger = Ledger(settings, nc, EventStore(nc))
    await ensure_streams(ledger.store.js, replicas=settings.stream_replicas,
                         duplicate_window_s=settings.stream_duplicate_window_s)
    table = consumers(ledger)
    await declare_consumers(broker, ledger.store.js, table)
    lag = ConsumerLag(ledger.store.js, [(c.stream, c.durable) for c in table])
    background.start(lag.run)
    try:
        yield ledger
    finally:
        await background.stop()
