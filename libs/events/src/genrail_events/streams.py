"""The streams of the log. File storage, no deletes or purges, a short dedupe window."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StreamSpec:
    name: str
    subjects: tuple[str, ...]
    duplicate_window_s: float = 120.0


JOBS = StreamSpec("JOBS", ("job.>",))
LEDGER = StreamSpec("LEDGER", ("ledger.>",))
USERS = StreamSpec("USERS", ("user.>",))
PAYMENTS = StreamSpec("PAYMENTS", ("payment.>",))
BATCHES = StreamSpec("BATCHES", ("batch.>",))
WEBHOOKS = StreamSpec("WEBHOOKS", ("webhook.>",))
DLQ = StreamSpec("DLQ", ("dlq.>",))

ALL: tuple[StreamSpec, ...] = (JOBS, LEDGER, USERS, PAYMENTS, BATCHES, WEBHOOKS, DLQ)
