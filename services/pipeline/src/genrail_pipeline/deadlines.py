"""Deadlines: no job stays unfinished, and charged, for good. A job still `processing` past
its type's deadline expires; an async one is first checked with the provider (the
callback may have been lost), whose final answer is applied as a webhook would be, and
otherwise its prediction is canceled. A job the pipeline never started fails after
`DEADLINE_UNSTARTED_S`. The ledger refunds both. The projection only finds candidates;
the decision (`jobs.decide_overdue`) reads the log."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from genrail_events import jobs
from genrail_events.jobs import JobStatus as S
from genrail_readmodels import jobs as jobs_table
from genrail_eventlog.store import EventStore
from genrail_commands.jobs import in_job_trace, load_job, transition
from genrail_runtime.logs import event as log_event
from genrail_commands.predictions import OutputDownloadFailed, Prediction, apply_prediction
from genrail_pipeline.clients.errors import ProviderError
from genrail_storage.store import Storage

from .providers import Providers
from .settings import PipelineSettings

log = logging.getLogger("genrail.deadlines")


class DeadlineSweeper:
    def __init__(self, store: EventStore, engine: AsyncEngine, storage: Storage, providers: Providers,
                 settings: PipelineSettings):
        self.store, self.engine, self.storage, self.providers, self.settings = (
            store, engine, storage, providers, settings)

    async def candidates(self) -> list[str]:
        async with self.engine.connect() as conn:
            return await jobs_table.overdue(conn, self.settings.deadlines_s(), self.settings.deadline_unstarted_s)

    async def sweep(self) -> None:
        for job_id in await self.candidates():
            try:
                async with in_job_trace(self.store, job_id, "deadline.check"):
                    await self.check(job_id)
            except (ProviderError, OutputDownloadFailed) as exc:
                log.warning("deadline.check_failed", extra={"job_id": job_id, "reason": str(exc)})

    async def check(self, job_id: str) -> None:
        job, _ = await load_job(self.store, job_id)
        if job is None:
            return
        overdue = jobs.decide_overdue(job, datetime.now(UTC), processing_s=self.settings.deadline_s(job.type.value),
                                      unstarted_s=self.settings.deadline_unstarted_s)
        if overdue is None:
            return
        if overdue.ask_provider:
            assert job.prediction_id is not None
            try:
                prediction = await self._ask_provider(job.prediction_id)
            except ProviderError:
                if self._given_up_on_provider(job):
                    await self._end(job, overdue.to, f"{overdue.error} (it could not be reached)")
                    return
                raise
            if prediction is not None and prediction.finished:
                try:
                    await apply_prediction(self.store, self.storage, self.providers.fetcher, job.id, job.attempt,
                                           prediction, max_bytes=self.settings.max_output_bytes, timeout_s=60,
                                           output_hosts=self.settings.allowed_output_hosts())
                except OutputDownloadFailed as exc:  # past the deadline, outputs that cannot be had are a failure
                    await self._end(job, S.failed, f"the provider's outputs could not be fetched: {exc}")
                return
            if prediction is not None:
                await self.providers.replicate.cancel_prediction(job.prediction_id)
        await self._end(job, overdue.to, overdue.error)

    def _given_up_on_provider(self, job: jobs.Job) -> bool:
        """A provider unreachable for twice the deadline does not keep the job (and its
        credits) waiting any longer: a result that comes later finds the job ended."""
        waited = (datetime.now(UTC) - job.updated_at).total_seconds()
        return waited >= 2 * self.settings.deadline_s(job.type.value)

    async def _ask_provider(self, prediction_id: str) -> Prediction | None:
        """The prediction as the provider has it now; None when it no longer knows it (a
        permanent refusal such as 404: nothing will ever come back for it)."""
        try:
            return Prediction.from_object(await self.providers.replicate.get_prediction(prediction_id))
        except ProviderError as exc:
            if exc.transient:
                raise
            log.warning("deadline.prediction_unknown", extra={"prediction_id": prediction_id, "reason": str(exc)})
            return None

    async def _end(self, job: jobs.Job, to: S, error: str) -> None:
        try:
            await transition(self.store, job.id, lambda j: jobs.decide_transition(j, to, error=error))
        except jobs.InvalidTransition:
            return
        log_event(log, f"job.{to}", job_id=job.id, user_id=job.user_id, type=str(job.type), attempt=job.attempt,
                  error=error)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.sweep()
            except Exception:  # noqa: BLE001 - a failed sweep is retried at the next interval
                log.exception("deadline.sweep_failed")
            try:
                await asyncio.wait_for(stop.wait(), self.settings.deadline_sweep_interval_s)
            except TimeoutError:
                pass


async def cancel_at_provider(store: EventStore, providers: Providers, transitioned: jobs.JobTransitionedData) -> None:
    """A canceled async job's prediction is canceled at the provider, so the work really stops."""
    if transitioned.to is not S.canceled or transitioned.type not in jobs.ASYNC_TYPES:
        return
    job, _ = await load_job(store, transitioned.job_id)
    if job is None or not job.prediction_id:
        return
    try:
        await providers.replicate.cancel_prediction(job.prediction_id)
    except ProviderError as exc:
        if exc.transient:
            raise
        log.info("prediction.cancel_refused", extra={"job_id": job.id, "reason": str(exc)})
        return
    log_event(log, "prediction.canceled", job_id=job.id, prediction_id=job.prediction_id)
