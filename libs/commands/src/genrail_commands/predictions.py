"""Applying a Replicate prediction to its job: the one place that turns a provider's
answer (a signed webhook, or a poll at the deadline) into the job's transition, with the
outputs downloaded into storage first. Safe to run twice, late, or out of order: the job's
state on the log decides, and output keys are deterministic, so a repeat stores nothing new."""

from __future__ import annotations

import hashlib
import hmac
import logging
import mimetypes
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import msgspec

from genrail_events import jobs
from genrail_events.jobs import JobStatus as S

from genrail_eventlog.store import EventStore
from genrail_runtime.logs import event as log_event
from genrail_storage.store import Storage

from .jobs import load_job, transition

log = logging.getLogger("genrail.predictions")
RUNNING = {"starting", "processing"}
FAILED = {"failed", "canceled", "aborted"}


class Prediction(msgspec.Struct, frozen=True, kw_only=True):
    """What genrail reads of a Replicate prediction object (a webhook's body, or a poll's answer)."""

    id: str | None = None
    status: str
    output: Any = None
    error: Any = None
    metrics: dict[str, Any] | None = None

    @classmethod
    def from_object(cls, value: Any) -> Prediction:
        """ValueError when `value` is not a prediction object."""
        return msgspec.convert(value, cls)

    @property
    def finished(self) -> bool:
        return self.status == "succeeded" or self.status in FAILED


def callback_url(webhooks_public_url: str, job_id: str, attempt: int, secret: str) -> str:
    """The webhook URL a job's prediction calls back: it names the job and the attempt, so a
    callback that comes before the pipeline recorded the prediction id still finds its job.
    The provider signs the body, not the URL: `sig` signs the job and attempt, so that a
    signed body replayed to another job's URL is refused."""
    query = urlencode({"job_id": job_id, "attempt": attempt, "sig": callback_signature(secret, job_id, attempt)})
    return f"{webhooks_public_url.rstrip('/')}/webhooks/replicate?{query}"


def callback_signature(secret: str, job_id: str, attempt: int) -> str:
    return hmac.new(secret.encode(), f"callback:{job_id}:{attempt}".encode(), hashlib.sha256).hexdigest()[:32]


def callback_signed(secret: str, job_id: str, attempt: int, sig: str | None) -> bool:
    return sig is not None and hmac.compare_digest(callback_signature(secret, job_id, attempt), sig)


class OutputDownloadFailed(Exception):
    """The provider's output could not be fetched (worth trying again: it is transient)."""


def output_host_allowed(url: str, allowed_hosts: tuple[str, ...]) -> bool:
    """Is the URL's host (and port) one provider outputs may come from? Entries: `host`,
    `*.domain` (its subdomains), `host:port` (that port only)."""
    try:
        parts = urlsplit(url)
        host, port = (parts.hostname or "").lower(), parts.port
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not host:
        return False
    for entry in allowed_hosts:
        name, _, entry_port = entry.partition(":") if not entry.startswith("[") else (entry, "", "")
        if entry_port and (port or (443 if parts.scheme == "https" else 80)) != int(entry_port):
            continue
        if host == name or (name.startswith("*.") and host.endswith(name[1:])):
            return True
    return False


def output_urls(prediction: Prediction) -> list[str]:
    output = prediction.output
    if isinstance(output, str):
        return [output]
    if isinstance(output, list):
        return [o for o in output if isinstance(o, str)]
    return []


async def download_outputs(http: httpx.AsyncClient, storage: Storage, job: jobs.Job, urls: list[str], *,
                           max_bytes: int, timeout_s: float) -> list[dict[str, Any]]:
    files = []
    for index, url in enumerate(urls):
        try:
            async with http.stream("GET", url, timeout=timeout_s, follow_redirects=True) as response:
                if response.status_code != 200:
                    raise OutputDownloadFailed(f"output {url} answered {response.status_code}")
                content_type = response.headers.get("content-type", "application/octet-stream").split(";")[0]
                ext = mimetypes.guess_extension(content_type) or ""
                key = f"jobs/{job.id}/{job.attempt}/output-{index}{ext}"
                size = await storage.put_stream(key, response.aiter_bytes(), content_type, max_bytes)
        except httpx.HTTPError as exc:
            raise OutputDownloadFailed(f"output {url}: {exc}") from exc
        files.append({"key": key, "content_type": content_type, "size": size})
    return files


async def apply_prediction(store: EventStore, storage: Storage, http: httpx.AsyncClient, job_id: str,
                           attempt: int | None, prediction: Prediction, *, max_bytes: int,
                           timeout_s: float, output_hosts: tuple[str, ...]) -> str:
    """What happened, in a word or two, for the caller's log. `http` fetches the outputs: a
    guarded client (`genrail_runtime.guarded_http`); outputs on other hosts than
    `output_hosts` fail the job (and so are refunded) without being fetched."""
    job, seq = await load_job(store, job_id)
    if job is None:
        return "unknown job"
    if attempt is not None and attempt != job.attempt:
        return "earlier attempt"
    if job.status in jobs.FINAL_STATUSES:
        return f"job already {job.status}"
    status, prediction_id = prediction.status, prediction.id

    def start(current: jobs.Job):
        if current.status in (S.pending, S.queued):
            return jobs.decide_transition(current, S.processing, prediction_id=prediction_id)
        return None

    try:
        job, _, seq = await transition(store, job_id, start, known=(job, seq))
        if prediction_id and job.prediction_id != prediction_id:
            return "not the job's prediction"  # e.g. a second prediction started after a crash
        if status in RUNNING:
            return "started"
        if status == "succeeded" and (refused := [u for u in output_urls(prediction)
                                                  if not output_host_allowed(u, output_hosts)]):
            return await _fail(store, job, seq, "provider output from a host outputs are not taken from: "
                                                f"{urlsplit(refused[0]).hostname}")
        if status == "succeeded":
            files = await download_outputs(http, storage, job, output_urls(prediction), max_bytes=max_bytes,
                                           timeout_s=timeout_s)
            output = {"files": files, "prediction_id": prediction_id,
                      "metrics": prediction.metrics or {}}
            await transition(store, job_id, lambda j: jobs.decide_transition(j, S.completed, output=output),
                             known=(job, seq))
            log_event(log, "job.completed", job_id=job_id, user_id=job.user_id, type=str(job.type),
                      attempt=job.attempt, prediction_id=prediction_id, created_at=job.created_at)
            return "completed"
        if status in FAILED:
            return await _fail(store, job, seq, f"provider prediction {status}: {prediction.error or 'no reason given'}")
    except jobs.InvalidTransition:
        return "job moved on meanwhile"
    return f"ignored status {status!r}"


async def _fail(store: EventStore, job: jobs.Job, seq: int, error: str) -> str:
    await transition(store, job.id, lambda j: jobs.decide_transition(j, S.failed, error=error), known=(job, seq))
    log_event(log, "job.failed", job_id=job.id, user_id=job.user_id, type=str(job.type), attempt=job.attempt,
              error=error)
    return "failed"
