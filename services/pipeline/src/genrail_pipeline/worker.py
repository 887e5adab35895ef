"""Running one job: pending -> processing -> completed | failed, safe to redeliver.

A redelivered job (the worker died, a provider failed transiently, or no slot was free) is
picked up from its state on the log: a final job is acked and left alone, a processing one
is run again.
"""

from __future__ import annotations

import logging
import os

from genrail_events import jobs
from genrail_events.envelope import Event
from genrail_eventlog.consumers import DeadLetter, Defer, Retry, backoff_s
from genrail_eventlog.store import ConcurrencyConflict, EventStore
from genrail_commands.jobs import append_job_event, load_job, transition
from genrail_runtime.logs import event as log_event
from genrail_pipeline.clients.errors import ProviderError
from genrail_storage.store import ObjectNotFound

from .limits import Limiter
from .providers import Providers
from .settings import PipelineSettings

log = logging.getLogger("genrail.pipeline")
S = jobs.JobStatus


class Worker:
    def __init__(self, store: EventStore, providers: Providers, settings: PipelineSettings, limiter: Limiter):
        self.store, self.providers, self.settings, self.limiter = store, providers, settings, limiter

    async def handle(self, event: jobs.JobCreated | jobs.JobRetried, stream_seq: int, num_delivered: int) -> None:
        if isinstance(event, jobs.JobCreated) and num_delivered == 1:
            # First delivery: the message is the job's whole history so far. If anything was
            # appended since (a cancel), the append below conflicts and reloads from the log.
            job, seq = jobs.evolve(None, event), stream_seq
        else:
            job, seq = await load_job(self.store, event.aggregate_id)
        if job is None or job.status in jobs.FINAL_STATUSES or job.attempt != event.data.attempt:
            return  # already done, canceled, or a message of an earlier attempt
        if not await self.limiter.acquire(job.user_id, job.type.value, self.settings.pipeline_slot_wait_s):
            await self._wait_in_queue(job, seq)
            raise Defer(self.settings.pipeline_defer_s)
        try:
            if job.type in jobs.ASYNC_TYPES:
                await self._submit(job, seq)
            else:
                await self._run_inline(job, seq)
        finally:
            self.limiter.release(job.user_id, job.type.value)

    async def _wait_in_queue(self, job: jobs.Job, seq: int) -> None:
        if job.status is S.pending:
            try:
                await self._move(job, seq, S.queued, reason="waiting for a free slot")
            except jobs.InvalidTransition:
                pass

    async def _run_inline(self, job: jobs.Job, seq: int) -> None:
        if job.status in (S.pending, S.queued):
            try:
                job, _, seq = await self._move(job, seq, S.processing)
            except jobs.InvalidTransition:
                return  # canceled before it started
        try:
            output = await self.providers.run_inline(job)
        except ProviderError as exc:
            await self._provider_failed(job, seq, exc)
            return
        except ObjectNotFound as exc:
            await self.fail(job.id, f"input missing from storage: {exc}")
            return
        await self._finish(job, seq, S.completed, output=output)
        self._failpoint()

    async def _provider_failed(self, job: jobs.Job, seq: int, exc: ProviderError) -> None:
        """A permanent failure fails the job. A transient one is recorded on the log and
        retried after a backoff; the attempt fails once it has failed `provider_attempts` times."""
        error = f"{job.type} provider: {exc}"
        if not exc.transient:
            await self.fail(job.id, error)
            return
        failed = jobs.provider_failed(job, error)
        try:
            await append_job_event(self.store, job, seq, failed)
        except ConcurrencyConflict:
            raise Retry(error, exc.retry_after_s) from exc  # the job moved (a cancel): look again
        log_event(log, "job.provider_failed", job_id=job.id, user_id=job.user_id, type=str(job.type),
                  attempt=job.attempt, failures=failed.data.failures, error=error)
        if failed.data.failures >= self.settings.pipeline_provider_attempts:
            await self.fail(job.id, error)
            raise DeadLetter(error) from exc
        raise Retry(error, exc.retry_after_s if exc.retry_after_s is not None
                    else backoff_s(failed.data.failures)) from exc

    async def _submit(self, job: jobs.Job, seq: int) -> None:
        """Async types: start a prediction and record its id with `processing`. A crash
        between the two starts a second prediction on redelivery (Replicate has no
        idempotency keys); its callback is ignored as not the job's prediction."""
        if job.prediction_id:
            return  # submitted before a redelivery; the webhook or the deadline will finish it
        try:
            prediction = await self.providers.submit_prediction(job)
        except ProviderError as exc:
            await self._provider_failed(job, seq, exc)
            return

        def record(current: jobs.Job):
            if current.status in (S.pending, S.queued):
                return jobs.decide_transition(current, S.processing, prediction_id=prediction["id"])
            return None  # its webhook got here first

        moved, appended, _ = await transition(self.store, job.id, record, known=(job, seq))
        if appended is None:
            if moved.status in jobs.FINAL_STATUSES and moved.prediction_id != prediction["id"]:
                await self._cancel_orphan(moved, prediction["id"])  # the job ended (canceled) meanwhile
            return
        log_event(log, "job.transition", job_id=job.id, user_id=job.user_id, type=str(job.type),
                  attempt=job.attempt, to="processing", prediction_id=prediction["id"])

    async def _cancel_orphan(self, job: jobs.Job, prediction_id: str) -> None:
        """A prediction started for a job that ended before it could be recorded: stop the work."""
        try:
            await self.providers.replicate.cancel_prediction(prediction_id)
        except ProviderError as exc:
            log.warning("prediction.cancel_failed", extra={"job_id": job.id, "prediction_id": prediction_id,
                                                           "reason": str(exc)})
            return
        log_event(log, "prediction.canceled", job_id=job.id, prediction_id=prediction_id, reason=str(job.status))

    async def fail(self, job_id: str, error: str) -> None:
        """Fail the job unless it is already final (used after the last delivery too)."""
        job, seq = await load_job(self.store, job_id)
        if job is None or job.status in jobs.FINAL_STATUSES:
            return
        await self._finish(job, seq, S.failed, error=error)

    async def _move(self, job: jobs.Job, seq: int, to: S, **fields) -> tuple[jobs.Job, Event, int]:
        moved = await transition(self.store, job.id, lambda j: jobs.decide_transition(j, to, **fields),
                                 known=(job, seq))
        log_event(log, "job.transition", job_id=job.id, user_id=job.user_id, type=str(job.type),
                  attempt=job.attempt, to=str(to))
        return moved

    async def _finish(self, job: jobs.Job, seq: int, to: S, **fields) -> None:
        try:
            await self._move(job, seq, to, **fields)
        except jobs.InvalidTransition:
            return  # canceled meanwhile: the result is dropped, the refund is the ledger's
        name = "job.completed" if to is S.completed else "job.failed"
        log_event(log, name, job_id=job.id, user_id=job.user_id, type=str(job.type), attempt=job.attempt,
                  error=fields.get("error"), created_at=job.created_at)

    def _failpoint(self) -> None:
        marker = self.settings.pipeline_failpoint_crash_before_ack_once
        if marker is not None and not marker.exists():
            marker.write_text(str(os.getpid()))
            os._exit(17)
