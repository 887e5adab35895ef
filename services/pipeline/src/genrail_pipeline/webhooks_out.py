"""Webhooks genrail sends: a job that named a `webhook` hears of its start, output and end.

A consumer of the job transitions of its own (never on the request path): each event the
job asked for is POSTed to its URL, through the guarded fetcher (no private address unless
FETCH_ALLOW says so), signed with Standard Webhooks headers and the account's secret. A
receiver that does not answer 2xx gets the delivery again after `OUTGOING_WEBHOOK_RETRY_S`
(about three days); after that the delivery is given up, logged and dead-lettered. The
`webhook-id` is the same for every try of one event, so a receiver can drop repeats.

The body: `{"type": "job.<event>", "timestamp", "data": <the job, as GET /v1/jobs/{id} shows
it, media as storage keys: read the job for URLs>}`."""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime
from typing import Any

import httpx

from genrail_commands.jobs import load_job
from genrail_eventlog.consumers import Retry
from genrail_events import jobs
from genrail_runtime.logs import event as log_event
from genrail_runtime.webhook_signing import account_secret, sign

from .settings import PipelineSettings

log = logging.getLogger("genrail.webhooks_out")


def body_of(job: jobs.Job, event: str, transitioned: jobs.JobTransitionedData, at: datetime) -> bytes:
    data = {"id": job.id, "type": str(job.type), "status": str(transitioned.to), "cost": job.cost, "input": job.input,
            "output": transitioned.output, "error": transitioned.error, "attempt": transitioned.attempt,
            "batch_id": job.batch_id, "created_at": job.created_at.isoformat(), "updated_at": at.isoformat()}
    return json.dumps({"type": f"job.{event}", "timestamp": at.isoformat(), "data": data},
                      separators=(",", ":")).encode()


class WebhookSender:
    def __init__(self, store: Any, fetcher: httpx.AsyncClient, settings: PipelineSettings):
        self.store, self.fetcher, self.settings = store, fetcher, settings
        self.retries_s = settings.webhook_retries_s()

    @property
    def max_deliver(self) -> int:
        return len(self.retries_s) + 1

    async def handle(self, event: Any, num_delivered: int) -> None:
        if not isinstance(event, jobs.JobTransitioned) or event.data.webhook is None:
            return  # most jobs: nothing to read, nothing to send
        master = self.settings.outgoing_webhook_key.get_secret_value()
        job, _ = await load_job(self.store, event.aggregate_id)
        if job is None or job.webhook is None or not master:
            return
        for told in jobs.webhook_events(job, event.data.to):
            await self._deliver(job, told, event, account_secret(master, job.user_id), num_delivered)

    async def _deliver(self, job: jobs.Job, told: str, event: jobs.JobTransitioned, secret: str,
                       num_delivered: int) -> None:
        assert job.webhook is not None
        body = body_of(job, told, event.data, event.occurred_at)
        msg_id = f"msg_{event.id}_{told}"
        headers = {**sign(secret, msg_id, int(time.time()), body), "content-type": "application/json",
                   "user-agent": "genrail-webhooks"}
        started = time.perf_counter()
        try:
            answer = await self.fetcher.post(job.webhook.url, content=body, headers=headers,
                                             timeout=self.settings.outgoing_webhook_timeout_s)
            outcome, delivered = f"HTTP {answer.status_code}", answer.is_success
        except httpx.HTTPError as exc:  # the guard's refusals included: not worth telling apart here
            outcome, delivered = f"{type(exc).__name__}: {exc}"[:200], False
        log_event(log, "webhook.attempt", job_id=job.id, user_id=job.user_id, event=f"job.{told}",
                  url=job.webhook.url, attempt=num_delivered, outcome=outcome, delivered=delivered,
                  latency_ms=round((time.perf_counter() - started) * 1000))
        if delivered:
            return
        if num_delivered > len(self.retries_s):
            log_event(log, "webhook.gave_up", job_id=job.id, user_id=job.user_id, url=job.webhook.url,
                      attempts=num_delivered, outcome=outcome)
            raise Retry(f"webhook {job.webhook.url} gave no 2xx in {num_delivered} tries: {outcome}")
        raise Retry(f"webhook {job.webhook.url}: {outcome}", delay_s=self.retries_s[num_delivered - 1])
