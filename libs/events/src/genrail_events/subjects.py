"""Subject builders. Event type first, aggregate id last; the ledger puts the user first.

Job subjects carry one routing fact between the kind and the job id, so a consumer filters
on what it acts on instead of decoding and dropping the rest: the target status of a
transition (`job.transitioned.failed.<id>`), the job type of a creation or a retry
(`job.created.copy.<id>`), the attempt of a provider failure. Logs written before this
scheme hold three-token job subjects (`job.transitioned.<id>`); they stay as they are (the
log is never rewritten) and are read alongside: see `legacy_job_events`.

Ledger subjects end in the entry's uniqueness key (the job and attempt a debit or refund
belongs to, the payment a purchase comes from), so "was this attempt already refunded?"
is one exact get-last-by-subject, valid forever, not only within the duplicate window.
"""

from __future__ import annotations

import re

_TOKEN = re.compile(r"^[A-Za-z0-9_\-]+$")


def token(value: object) -> str:
    """A subject token; refuses anything that would change the subject's shape."""
    text = str(value)
    if not _TOKEN.match(text):
        raise ValueError(f"not a valid subject token: {text!r}")
    return text


# JOBS
def job(kind: str, route: object, job_id: object) -> str:
    return f"job.{kind}.{token(route)}.{token(job_id)}"


def job_events(job_id: object) -> str:
    """Every event of one job: the filter its appends expect their last sequence on."""
    return f"job.*.*.{token(job_id)}"


def legacy_job_events(job_id: object) -> str:
    """A job's events written before routing tokens (three tokens: `job.<kind>.<id>`)."""
    return f"job.*.{token(job_id)}"


def job_kind(kind: str, job_id: object) -> str:
    """One kind of a job's events, whatever the routing token."""
    return f"job.{kind}.*.{token(job_id)}"


def legacy_job_kind(kind: str, job_id: object) -> str:
    return f"job.{kind}.{token(job_id)}"


def job_transitions_to(*statuses: str) -> tuple[str, ...]:
    """Filters for transitions into these statuses, and the unrouted transitions of an older
    log, which the handler still tells apart by decoding them."""
    return (*(f"job.transitioned.{token(s)}.>" for s in statuses), LEGACY_JOB_TRANSITIONED_ALL)


JOB_CREATED_ALL = "job.created.>"
JOB_TRANSITIONED_ALL = "job.transitioned.>"
LEGACY_JOB_TRANSITIONED_ALL = "job.transitioned.*"
JOB_RETRIED_ALL = "job.retried.>"


# LEDGER
def ledger(user_id: object, kind: str, *key: object) -> str:
    return ".".join(["ledger", token(user_id), kind, *(token(k) for k in key)])


def ledger_account(user_id: object) -> str:
    return f"ledger.{token(user_id)}.>"


LEDGER_DEBITED_ALL = "ledger.*.debited.>"


# USERS
def user(kind: str, user_id: object) -> str:
    return f"user.{kind}.{token(user_id)}"


USER_REGISTERED_ALL = "user.registered.>"


# PAYMENTS
def payment(kind: str, payment_event_id: object) -> str:
    return f"payment.{kind}.{token(payment_event_id)}"


# BATCHES
def batch(kind: str, batch_id: object) -> str:
    return f"batch.{kind}.{token(batch_id)}"


# WEBHOOKS
def webhook_endpoint(kind: str, user_id: object, endpoint_id: object) -> str:
    return f"webhook.endpoint.{token(kind)}.{token(user_id)}.{token(endpoint_id)}"


def webhook_endpoint_events(user_id: object, endpoint_id: object) -> str:
    """Every event of one endpoint: the filter its appends expect their last sequence on."""
    return f"webhook.endpoint.*.{token(user_id)}.{token(endpoint_id)}"


def webhook_endpoints_of(user_id: object) -> str:
    return f"webhook.endpoint.*.{token(user_id)}.*"


def webhook_message(kind: str, user_id: object, message_id: object) -> str:
    return f"webhook.message.{token(kind)}.{token(user_id)}.{token(message_id)}"


WEBHOOK_ENDPOINTS_ALL = "webhook.endpoint.>"
WEBHOOK_MESSAGES_TO_SEND = ("webhook.message.created.>", "webhook.message.resend.>")


# DLQ
def dlq(stream: str, consumer: str) -> str:
    return f"dlq.{token(stream)}.{token(consumer)}"
