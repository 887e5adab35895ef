"""The ledger's composition root: its one NATS connection, its store, and the table of its
durable consumers (one per policy), opened and closed in one place."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from nats.aio.client import Client as NATS

from genrail_events import jobs, subjects
from genrail_eventlog.consumers import DurableConsumer, declare_consumers
from genrail_eventlog.lag import ConsumerLag
from genrail_eventlog.store import EventStore, open_log
from genrail_runtime.background import Background

from . import policies
from .settings import LedgerSettings


@dataclass(frozen=True)
class Ledger:
    """What the ledger's policies run on."""

    settings: LedgerSettings
    nc: NATS  # the process's only connection
    store: EventStore


def consumers(ledger: Ledger) -> list[DurableConsumer]:
    """Every durable consumer of the ledger: one per policy."""
    settings, store = ledger.settings, ledger.store

    def policy(stream: str, durable: str, subject: str | tuple[str, ...], handler) -> DurableConsumer:
        filters = (subject,) if isinstance(subject, str) else subject
        return DurableConsumer(stream, durable, filters, handler=lambda event, _delivery: handler(event),
                               max_deliver=settings.ledger_max_deliver)

    return [
        policy("USERS", "ledger-signup-grants", settings.signup_credits_subject(),
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
async def open_ledger(settings: LedgerSettings, background: Background) -> AsyncIterator[Ledger]:
    """Connect, make sure the streams and the consumers exist, and start reading the
    consumers and their lag in `background`. On leaving, the background stops (if it has
    not) and then the connection drains."""
    async with open_log(settings.nats_url, "genrail-ledger", replicas=settings.stream_replicas,
                        duplicate_window_s=settings.stream_duplicate_window_s) as store:
        ledger = Ledger(settings, store.nc, store)
        try:
            table = consumers(ledger)
            background.start(*await declare_consumers(store.js, table, graceful_s=10))
            background.start(ConsumerLag(store.js, [(c.stream, c.durable) for c in table]).run)
            yield ledger
        finally:
            await background.stop()
