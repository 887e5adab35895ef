"""One event PostgreSQL refuses does not stop a projection for everyone: the batch is
halved until that event is alone, it is set aside in `projection_quarantine` with its
sequence and the error, every other event of the batch is written, and the checkpoint
moves past it. A lost connection is not the data's fault: it is raised, not quarantined."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from genrail_cli.embedded import free_port
from genrail_eventlog.log import Stored
from genrail_events import jobs
from genrail_events.jobs import JobType
from genrail_readmodels import jobs as jobs_table
from genrail_readmodels.db import create_schema, load_checkpoint, make_engine, quarantined
from genrail_readmodels.runner import apply_or_quarantine


@pytest.fixture
async def engine(postgres):
    engine = make_engine(postgres.url, pool_size=2)
    async with engine.begin() as conn:
        await conn.execute(sa.text("DROP TABLE IF EXISTS jobs, projection_checkpoints, projection_quarantine"))
    await create_schema(engine, list(jobs_table.make().ddl))
    yield engine
    await engine.dispose()


def created(job_input: dict) -> jobs.JobCreated:
    return jobs.job_created(str(uuid.uuid4()), str(uuid.uuid4()), JobType.copy, 1, job_input)


async def test_a_row_postgresql_refuses_is_quarantined_and_the_rest_of_the_batch_is_written(engine) -> None:
    events = [created({"product_name": f"Mug {n}"}) for n in range(7)]
    events[4] = created({"product_name": "Mug\x00"})  # jsonb refuses \u0000: written by nothing we run today
    batch = [Stored(seq, jobs.subject_for(e), e) for seq, e in enumerate(events, start=1)]
    projection = jobs_table.make()

    await apply_or_quarantine(engine, projection, batch)

    async with engine.connect() as conn:
        ids = {str(r.id) for r in await conn.execute(sa.text("SELECT id FROM jobs"))}
        [set_aside] = await quarantined(conn)
        position, _ = await load_checkpoint(conn, "jobs")
    assert ids == {e.aggregate_id for i, e in enumerate(events) if i != 4}
    assert (set_aside.projection, set_aside.position, set_aside.event_type) == ("jobs", 5, "job.created")
    assert "unsupported Unicode escape sequence" in set_aside.error  # what PostgreSQL says of \\u0000
    assert position == 7


async def test_a_lost_connection_is_raised_not_quarantined(engine, postgres) -> None:
    broken = make_engine(postgres.url.replace(f":{postgres.port}/", f":{free_port()}/"), pool_size=1)
    event = created({"product_name": "Mug"})
    with pytest.raises(Exception) as raised:
        await apply_or_quarantine(broken, jobs_table.make(), [Stored(1, jobs.subject_for(event), event)])
    await broken.dispose()
    assert "quarantine" not in str(raised.value)
    async with engine.connect() as conn:
        assert await quarantined(conn) == []
