"""Consumers filter on routing tokens against a real nats-server: the refund consumer is
delivered the transitions it refunds and an older log's unrouted ones, nothing else; and a
durable declared with the old single filter is updated in place on upgrade, keeping its
position (what it already acked is not delivered again)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from nats.aio.client import Client as NATS

from genrail_cli.embedded import EmbeddedNats
from genrail_eventlog.consumers import consumer_config
from genrail_eventlog.store import connect, ensure_streams
from genrail_events import jobs, subjects
from genrail_events.jobs import JobStatus as S
from genrail_events.jobs import JobType


@pytest.fixture(scope="module")
async def nc(nats_server: EmbeddedNats) -> AsyncIterator[NATS]:
    nc = await connect(nats_server.url, "routed-consumers")
    await ensure_streams(nc.jetstream())
    yield nc
    await nc.close()


async def publish_path(nc: NATS, *path: S, legacy: bool = False) -> str:
    """A job's creation and transitions along `path`; returns the job id."""
    js, job_id = nc.jetstream(), str(uuid.uuid4())
    created = jobs.job_created(job_id, "u1", JobType.copy, 1, {})
    job, events = jobs.evolve(None, created), [created]
    for status in path:
        events.append(jobs.decide_transition(job, status, error="x" if status is S.failed else None))
        job = jobs.evolve(job, events[-1])
    for event in events:
        subject = (subjects.legacy_job_kind(event.type.split(".", 1)[1], job_id) if legacy
                   else jobs.subject_for(event))
        await js.publish(subject, event.to_bytes())
    return job_id


async def delivered_subjects(nc: NATS, durable: str, job_ids: set[str]) -> list[str]:
    subscription = await nc.jetstream().pull_subscribe_bind(durable, stream="JOBS")
    out: list[str] = []
    while True:
        try:
            messages = await subscription.fetch(100, timeout=1)
        except TimeoutError:
            break
        for message in messages:
            await message.ack()
            if message.subject.rsplit(".", 1)[1] in job_ids:
                out.append(message.subject)
    await subscription.unsubscribe()
    return out


async def test_the_refund_filter_gets_refundable_transitions_and_unrouted_ones_only(nc: NATS) -> None:
    js, durable = nc.jetstream(), f"refunds-{uuid.uuid4().hex[:8]}"
    await js.add_consumer("JOBS", consumer_config(
        durable, subjects.job_transitions_to(*sorted(jobs.REFUNDED_STATUSES)), max_deliver=3))
    completed = await publish_path(nc, S.processing, S.completed)
    failed = await publish_path(nc, S.processing, S.failed)
    canceled = await publish_path(nc, S.canceled)
    legacy = await publish_path(nc, S.processing, S.completed, legacy=True)

    got = await delivered_subjects(nc, durable, {completed, failed, canceled, legacy})

    assert sorted(got) == sorted([f"job.transitioned.failed.{failed}", f"job.transitioned.canceled.{canceled}",
                                  f"job.transitioned.{legacy}", f"job.transitioned.{legacy}"])


async def test_an_old_single_filter_durable_is_updated_in_place_and_keeps_its_position(nc: NATS) -> None:
    js, durable = nc.jetstream(), f"upgrade-{uuid.uuid4().hex[:8]}"
    await js.add_consumer("JOBS", consumer_config(durable, [subjects.JOB_TRANSITIONED_ALL], max_deliver=3))
    before = await publish_path(nc, S.processing, S.failed, legacy=True)
    assert len(await delivered_subjects(nc, durable, {before})) == 2  # acked before the upgrade

    await js.add_consumer("JOBS", consumer_config(durable, subjects.job_transitions_to(S.canceled), max_deliver=3))
    after = await publish_path(nc, S.processing, S.canceled)

    info = await js.consumer_info("JOBS", durable)
    assert list(info.config.filter_subjects) == list(subjects.job_transitions_to(S.canceled))
    assert await delivered_subjects(nc, durable, {before, after}) == [f"job.transitioned.canceled.{after}"]
