"""Handler tests in memory: given these events on the log, when this command or event, then
these events were appended.

The log is `InMemoryEventLog`, which passes the same contract suite as the JetStream store
(tests/contract): no NATS, no PostgreSQL, no HTTP server. Every test gets an empty log of
its own and fresh ids, so no test sees another's events.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from genrail_commands.accounts import load_account
from genrail_eventlog.log import Stored
from genrail_eventlog.memory import InMemoryEventLog, subject_matches
from genrail_events import batches, jobs, ledger, subjects, users
from genrail_events.audit import Logged, Violation, audit
from genrail_events.envelope import Event
from genrail_events.jobs import JobStatus, JobType
from genrail_pipeline.settings import PipelineSettings
from genrail_storage.store import FileStorage

from .fakes import Cdn

RETRIED = "retried"  # a step of a given job's path: an admin's retry, charged as a new attempt
Step = JobStatus | tuple[JobStatus, dict[str, Any]] | str


def new_id() -> str:
    return str(uuid.uuid4())


def subject_of(event: Event, *, legacy: bool = False) -> str:
    """The subject a service appends this event to (ledger entries come as the `Entry` their
    decide function returns, which names its subject). `legacy`: a job event's subject as
    logs written before routing tokens have it (`job.<kind>.<id>`)."""
    if isinstance(event, jobs.JOB_EVENTS):
        return subjects.legacy_job_kind(event.type.split(".", 1)[1], event.aggregate_id) if legacy \
            else jobs.subject_for(event)
    if isinstance(event, batches.BatchCreated):
        return batches.created_subject(event.aggregate_id)
    if isinstance(event, users.UserRegistered):
        return users.registered_subject(event.aggregate_id)
    raise TypeError(f"no subject known for {event.type}")


# --- then: what was appended ------------------------------------------------------------

@dataclass
class Appended:
    """Every message appended to the log after a moment, across streams, in append order."""

    log: InMemoryEventLog
    mark: int

    def stored(self, subject_filter: str = ">") -> list[Stored]:
        return [Stored(m.seq, m.subject, Event.from_bytes(m.body), dict(m.headers))
                for m in self.log.journal[self.mark:] if subject_matches(subject_filter, m.subject)]

    def subjects(self, subject_filter: str = ">") -> list[str]:
        return [s.subject for s in self.stored(subject_filter)]

    def events(self, subject_filter: str = ">") -> list[Any]:
        return [s.event for s in self.stored(subject_filter)]

    def one(self, subject_filter: str) -> Any:
        """The one event appended on this filter (fails if none or several were)."""
        [event] = self.events(subject_filter)
        return event


def appended_since(log: InMemoryEventLog) -> Appended:
    return Appended(log, len(log.journal))


# --- given: a history on the log ----------------------------------------------------------

class Given:
    """Puts facts on the log as the services would have appended them."""

    def __init__(self, log: InMemoryEventLog):
        self.log = log

    async def events(self, *facts: Event | ledger.Entry, legacy: bool = False) -> list[Stored]:
        out = []
        for fact in facts:
            if isinstance(fact, ledger.Entry):
                subject, event, msg_id = fact.subject, fact.event, fact.msg_id
            else:
                subject, event, msg_id = subject_of(fact, legacy=legacy), fact, None
            appended = await self.log.append(subject, event, msg_id=msg_id)
            out.append(Stored(appended.seq, subject, event))
        return out

    async def entry(self, user_id: str, decide: Callable[[ledger.Account], ledger.Entry]) -> ledger.Entry:
        """A ledger entry decided on the account as the log holds it now."""
        account, _ = await load_account(self.log, user_id)
        entry = decide(account)
        await self.events(entry)
        return entry

    async def user(self, credits: int = 10) -> str:
        """A registered user holding `credits` from their signup grant."""
        registered = users.user_registered(f"user-{uuid.uuid4().hex}@example.com", users.new_api_key())
        await self.events(registered)
        if credits:
            await self.entry(registered.aggregate_id,
                             lambda a: ledger.decide_grant(a, credits, "signup", "signup"))
        return registered.aggregate_id

    async def debit(self, user_id: str, job_id: str, attempt: int, request: ledger.Request, *,
                    at: datetime | None = None) -> ledger.CreditsDebited:
        entry = await self.entry(
            user_id, lambda a: ledger.decide_debit(a, job_id, attempt, request.cost, request, now=at))
        return entry.event

    async def job(self, user_id: str, *path: Step, type: JobType = JobType.copy, cost: int = 1,
                  input: dict[str, Any] | None = None, at: datetime | None = None,
                  refunds: bool = True, legacy: bool = False, job_id: str | None = None) -> jobs.Job:
        """A paid job (its debit, then `job.created`) moved along `path`: statuses, a status
        with its transition's fields, or RETRIED (the retry's debit, then `job.retried`).
        Unless `refunds=False`, every attempt that ends failed, canceled or expired is
        refunded, as the ledger does. `at` dates every event of the history. `legacy`: the
        job's events on the three-token subjects of a log written before routing tokens."""
        job_id, input = job_id or new_id(), input if input is not None else {"product": "a desk lamp"}
        await self.debit(user_id, job_id, 1, ledger.JobRequest(type=type, input=input, cost=cost), at=at)
        created = jobs.job_created(job_id, user_id, type, cost, input, now=at)
        await self.events(created, legacy=legacy)
        job = jobs.evolve(None, created)
        for step in path:
            if step == RETRIED:
                request = ledger.JobRequest(type=type, input=input, cost=cost, requested_by="admin")
                await self.debit(user_id, job_id, job.attempt + 1, request, at=at)
                event: Event = jobs.decide_retry(job, requested_by="admin", now=at)
            else:
                status, fields = step if isinstance(step, tuple) else (step, {})
                event = jobs.decide_transition(job, JobStatus(status), now=at, **fields)
            await self.events(event, legacy=legacy)
            job = jobs.evolve(job, event)
            if refunds and step != RETRIED and job.status in jobs.REFUNDED_STATUSES:
                ended = job
                await self.entry(user_id, lambda a: ledger.decide_refund(
                    a, ended.id, ended.attempt, ended.cost, f"job {ended.status}"))
        return job


# --- reading the outcome ------------------------------------------------------------------

async def balance(log: InMemoryEventLog, user_id: str) -> int:
    account, _ = await load_account(log, user_id)
    return account.balance


async def job_on_log(log: InMemoryEventLog, job_id: str) -> jobs.Job:
    history = sorted([*await log.read(subjects.job_events(job_id)),
                      *await log.read(subjects.legacy_job_events(job_id))], key=lambda s: s.seq)
    job = jobs.fold([s.event for s in history])
    assert job is not None, f"job {job_id} is not on the log"
    return job


def violations(log: InMemoryEventLog) -> list[Violation]:
    """What `genrail audit` would report about the whole log: balances that do not add up,
    double charges, missing or double refunds, illegal transitions."""
    return audit(Logged(s.seq, s.subject, s.event) for s in log.events())


@pytest.fixture
def log() -> InMemoryEventLog:
    """An empty log of the test's own (this shadows the e2e suite's session-wide JetStream log)."""
    return InMemoryEventLog()


@pytest.fixture
def given(log: InMemoryEventLog) -> Given:
    return Given(log)


@pytest.fixture
def cdn() -> Cdn:
    return Cdn()


@pytest.fixture
async def http(cdn: Cdn) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client whose only peer is the fake CDN."""
    async with httpx.AsyncClient(transport=httpx.MockTransport(cdn)) as client:
        yield client


@pytest.fixture
def storage(tmp_path: Path) -> FileStorage:
    return FileStorage(tmp_path / "media")


@pytest.fixture
def settings(tmp_path: Path) -> PipelineSettings:
    """The pipeline's settings, every value a test relies on given explicitly."""
    return PipelineSettings(pipeline_provider_attempts=3, pipeline_defer_s=0.25, pipeline_max_per_user=1,
                            pipeline_slot_wait_s=0.05, pipeline_max_waiting_per_user=2,
                            pipeline_max_image_edits=8, pipeline_max_scrapes=16, deadline_static_ad_s=300,
                            deadline_ugc_video_s=900, deadline_tts_s=300, deadline_sync_s=600,
                            deadline_unstarted_s=3600, max_output_bytes=1_000_000,
                            webhooks_public_url="http://webhooks.test",
                            storage_url=f"file://{tmp_path / 'media'}")
