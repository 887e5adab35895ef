"""Given a job in each state, when each transition is decided, then exactly the table's
transitions are allowed and every other one is refused naming both states."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import msgspec
import pytest

from genrail_events import jobs
from genrail_events.jobs import InvalidTransition, JobStatus, JobType

S = JobStatus
ALLOWED = {
    (S.pending, S.queued), (S.pending, S.processing), (S.pending, S.failed), (S.pending, S.canceled),
    (S.queued, S.processing), (S.queued, S.failed), (S.queued, S.canceled),
    (S.processing, S.completed), (S.processing, S.failed), (S.processing, S.canceled), (S.processing, S.expired),
    (S.failed, S.pending), (S.expired, S.pending),
}
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def job_in(status: JobStatus, attempt: int = 1) -> jobs.Job:
    return jobs.Job(id="j1", user_id="u1", type=JobType.copy, status=status, cost=2, input={"x": 1},
                    created_at=NOW, updated_at=NOW, attempt=attempt)


@pytest.mark.parametrize(("from_status", "to_status"), list(itertools.product(S, S)))
def test_every_pair_of_states_follows_the_table(from_status: JobStatus, to_status: JobStatus) -> None:
    assert jobs.can_transition(from_status, to_status) == ((from_status, to_status) in ALLOWED)
    job = job_in(from_status)
    if to_status is S.pending:
        decide = lambda: jobs.decide_retry(job, requested_by="admin", now=NOW)  # noqa: E731
    else:
        decide = lambda: jobs.decide_transition(job, to_status, now=NOW)  # noqa: E731
    if (from_status, to_status) in ALLOWED:
        event = decide()
        assert jobs.evolve(job, event).status is to_status
    else:
        with pytest.raises(InvalidTransition) as refused:
            decide()
        assert str(from_status) in str(refused.value) and str(to_status) in str(refused.value)


def test_transition_event_carries_what_the_ledger_needs_to_refund() -> None:
    event = jobs.decide_transition(job_in(S.processing, attempt=2), S.failed, error="provider down", now=NOW)
    d = event.data
    assert (d.job_id, d.user_id, d.cost, d.attempt, d.from_status, d.to, d.error) == (
        "j1", "u1", 2, 2, S.processing, S.failed, "provider down")
    wire = msgspec.json.decode(event.to_bytes())["data"]
    assert (wire["from"], wire["to"]) == ("processing", "failed")


def test_retry_starts_a_new_attempt_and_clears_the_previous_result() -> None:
    failed = jobs.evolve(job_in(S.processing), jobs.decide_transition(job_in(S.processing), S.failed, error="x"))
    retried = jobs.evolve(failed, jobs.decide_retry(failed, requested_by="admin"))
    assert (retried.status, retried.attempt, retried.error) == (S.pending, 2, None)


def test_fold_replays_a_history_into_the_same_job() -> None:
    created = jobs.job_created("j1", "u1", JobType.scrape, 1, {"url": "https://a.example"}, now=NOW)
    job = jobs.evolve(None, created)
    processing = jobs.decide_transition(job, S.processing, now=NOW)
    job = jobs.evolve(job, processing)
    done = jobs.decide_transition(job, S.completed, output={"title": "A"}, now=NOW)
    folded = jobs.fold([created, processing, done])
    assert folded is not None
    assert (folded.status, folded.output, folded.history) == (S.completed, {"title": "A"},
                                                              ("pending", "processing", "completed"))


def test_same_idempotency_key_names_the_same_job_and_keys_are_per_user() -> None:
    assert jobs.job_id_for("u1", "k") == jobs.job_id_for("u1", "k")
    assert jobs.job_id_for("u1", "k") != jobs.job_id_for("u2", "k")
    assert jobs.job_id_for("u1", None) != jobs.job_id_for("u1", None)


def test_events_round_trip_through_bytes() -> None:
    from genrail_events.envelope import Event

    event = jobs.job_created("j1", "u1", JobType.copy, 1, {"product_name": "Boots"}, now=NOW)
    assert Event.from_bytes(event.to_bytes()) == event


def test_provider_failures_are_counted_per_attempt_and_reset_by_a_retry() -> None:
    job = job_in(S.processing)
    job = jobs.evolve(job, jobs.provider_failed(job, "timeout"))
    job = jobs.evolve(job, jobs.provider_failed(job, "503"))
    assert job.failures == 2 and job.status is S.processing
    failed = jobs.evolve(job, jobs.decide_transition(job, S.failed, error="503"))
    retried = jobs.evolve(failed, jobs.decide_retry(failed, requested_by="admin"))
    assert retried.failures == 0
    stale = jobs.provider_failed(job, "late")  # from attempt 1, arriving after the retry
    assert jobs.evolve(retried, stale).failures == 0
