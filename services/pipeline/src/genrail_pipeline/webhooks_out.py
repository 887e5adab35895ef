"""Webhooks genrail sends, in two consumers of the log, never on the request path.

`WebhookFanOut` reads job transitions. For each event a transition tells (start, output,
completed) and each destination that wants it (the `webhook` URL the job named, and the
account's enabled endpoints that subscribe to it) it appends one message with its exact body
(`webhook.message.created`), once ever per (transition, event, destination). Most jobs have
no destination: for them this costs one decode and a dictionary look-up.

`WebhookDelivery` reads those messages (and resends asked for through the API) and POSTs
each to its destination through the guarded fetcher (no private address unless FETCH_ALLOW
says so), signed with Standard Webhooks headers: an endpoint's own secret (both versions
during a rotation's overlap), or the account's key for a job's own URL. Every try is
appended as `webhook.message.attempted` (status, latency, the start of the answer): the
delivery log the API lists. A destination that does not answer 2xx is tried again after
`OUTGOING_WEBHOOK_RETRY_S` (about three days); after the last try the message has failed,
and an endpoint that let a message fail for good is disabled, with the reason on it. The
`webhook-id` is the same for every try and resend of one message, so receivers drop repeats.

A message's body: `{"type": "job.<event>", "timestamp", "data": <the job, as GET
/v1/jobs/{id} shows it, media as storage keys: read the job for URLs>}`."""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime
from typing import Any

import httpx

from genrail_commands.jobs import load_job
from genrail_commands.webhooks import append_message, change_endpoint, load_message
from genrail_eventlog.consumers import Retry
from genrail_events import jobs, webhooks
from genrail_events.envelope import utcnow
from genrail_runtime.logs import event as log_event
from genrail_runtime.webhook_signing import account_secret, sign

from .settings import PipelineSettings
from .webhook_endpoints import EndpointDirectory

log = logging.getLogger("genrail.webhooks_out")


def body_of(job: jobs.Job, event: str, transitioned: jobs.JobTransitionedData, at: datetime) -> bytes:
    data = {"id": job.id, "type": str(job.type), "status": str(transitioned.to), "cost": job.cost, "input": job.input,
            "output": transitioned.output, "error": transitioned.error, "attempt": transitioned.attempt,
            "batch_id": job.batch_id, "created_at": job.created_at.isoformat(), "updated_at": at.isoformat()}
    return json.dumps({"type": f"job.{event}", "timestamp": at.isoformat(), "data": data},
                      separators=(",", ":")).encode()


class WebhookFanOut:
    def __init__(self, store: Any, directory: EndpointDirectory, settings: PipelineSettings):
        self.store, self.directory, self.settings = store, directory, settings

    async def handle(self, event: Any) -> None:
        if not isinstance(event, jobs.JobTransitioned):
            return
        d = event.data
        told = jobs.told_on(d.to)
        if not told or not self.settings.outgoing_webhook_key.get_secret_value():
            return
        if not self.directory.ready.is_set():
            await self.directory.wait_ready()
        destinations = [(None, d.webhook.url, e) for e in told if e in d.webhook.events] if d.webhook else []
        destinations += [(ep.id, ep.url, e) for ep in self.directory.of(d.user_id) for e in told if ep.wants(e)]
        if not destinations:
            return  # most jobs
        job, _ = await load_job(self.store, d.job_id)
        if job is None:
            return
        for endpoint_id, url, told_event in destinations:
            message_id = webhooks.message_id_for(event.id, told_event, endpoint_id or "job")
            body = body_of(job, told_event, d, event.occurred_at)
            await append_message(self.store, webhooks.message_created(
                d.user_id, d.job_id, message_id, told_event, url, body, endpoint_id=endpoint_id))


class WebhookDelivery:
    def __init__(self, store: Any, fetcher: httpx.AsyncClient, directory: EndpointDirectory,
                 settings: PipelineSettings):
        self.store, self.fetcher, self.directory, self.settings = store, fetcher, directory, settings
        self.retries_s = settings.webhook_retries_s()

    @property
    def max_deliver(self) -> int:
        return len(self.retries_s) + 1

    async def handle(self, event: Any, num_delivered: int) -> None:
        if isinstance(event, webhooks.MessageCreated):
            message = event.data
        elif isinstance(event, webhooks.ResendRequested):
            message = await load_message(self.store, event.data.user_id, event.data.message_id)
            if message is None:
                return
        else:
            return
        master = self.settings.outgoing_webhook_key.get_secret_value()
        if not master:
            return
        if not self.directory.ready.is_set():
            await self.directory.wait_ready()
        destination = self._destination(message, master)
        if isinstance(destination, str):  # the endpoint is gone or off: recorded, not sent
            await self._record(webhooks.attempted(message, num_delivered, delivered=False, final=True,
                                                  outcome=f"skipped: {destination}"))
            return
        url, secrets = destination
        final = await self._try(message, url, secrets, num_delivered)
        if final is None:
            return
        if num_delivered >= self.max_deliver:
            await self._give_up(message, url, num_delivered, final)
            return
        raise Retry(f"webhook {url}: {final}", delay_s=self.retries_s[num_delivered - 1])

    def _destination(self, message: webhooks.MessageCreatedData, master: str) -> tuple[str, list[str]] | str:
        if message.endpoint_id is None:
            return message.url, [account_secret(master, message.user_id)]
        endpoint = self.directory.get(message.user_id, message.endpoint_id)
        if endpoint is None:
            return "endpoint deleted"
        if endpoint.status is not webhooks.EndpointStatus.enabled:
            return f"endpoint disabled ({endpoint.disabled_reason})"
        return endpoint.url, [webhooks.endpoint_secret(master, endpoint.id, v)
                              for v in endpoint.secret_versions(utcnow())]

    async def _try(self, message: webhooks.MessageCreatedData, url: str, secrets: list[str],
                   num_delivered: int) -> str | None:
        """POST the message once and record the attempt; None when delivered, else what happened."""
        body = message.body.encode()
        headers = {**sign(secrets, message.message_id, int(time.time()), body), "content-type": "application/json",
                   "user-agent": "genrail-webhooks"}
        started = time.perf_counter()
        status_code, answer_text = None, ""
        try:
            answer = await self.fetcher.post(url, content=body, headers=headers,
                                             timeout=self.settings.outgoing_webhook_timeout_s)
            status_code, answer_text = answer.status_code, answer.text[:webhooks.SNIPPET_CHARS]
            outcome, delivered = f"HTTP {answer.status_code}", answer.is_success
        except httpx.HTTPError as exc:  # the guard's refusals included: not worth telling apart here
            outcome, delivered = f"{type(exc).__name__}: {exc}"[:200], False
        latency_ms = round((time.perf_counter() - started) * 1000)
        final = delivered or num_delivered >= self.max_deliver
        log_event(log, "webhook.attempt", message_id=message.message_id, job_id=message.job_id,
                  user_id=message.user_id, endpoint_id=message.endpoint_id, event=message.event_type, url=url,
                  attempt=num_delivered, outcome=outcome, delivered=delivered, latency_ms=latency_ms)
        await self._record(webhooks.attempted(message, num_delivered, delivered=delivered, final=final,
                                              outcome=outcome, status_code=status_code, latency_ms=latency_ms,
                                              response=answer_text, url=url))
        return None if delivered else outcome

    async def _give_up(self, message: webhooks.MessageCreatedData, url: str, attempts: int, outcome: str) -> None:
        log_event(log, "webhook.gave_up", message_id=message.message_id, job_id=message.job_id,
                  user_id=message.user_id, endpoint_id=message.endpoint_id, url=url, attempts=attempts,
                  outcome=outcome)
        if message.endpoint_id is None:
            return
        reason = f"message {message.message_id} got no 2xx in {attempts} tries over the retry schedule: {outcome}"
        try:
            _, disabled = await change_endpoint(self.store, message.user_id, message.endpoint_id, lambda ep: (
                webhooks.decide_disable(ep, reason, by="sender", message_id=message.message_id)))
        except LookupError:
            return
        if disabled is not None:
            log_event(log, "webhook.endpoint_disabled", endpoint_id=message.endpoint_id, user_id=message.user_id,
                      reason=reason)

    async def _record(self, attempt: webhooks.MessageAttempted) -> None:
        await self.store.append(webhooks.subject_for(attempt), attempt)
