"""The `jobs` read model: the job aggregate's `evolve` folded over JOBS, one row per job."""

from __future__ import annotations

import json
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from genrail_events import jobs
from genrail_platform.eventstore import Stored
from genrail_platform.projection import Projection

DDL = (
    """CREATE TABLE IF NOT EXISTS {jobs} (
        id            uuid PRIMARY KEY,
        user_id       uuid NOT NULL,
        type          text NOT NULL,
        status        text NOT NULL,
        cost          integer NOT NULL,
        input         jsonb NOT NULL,
        output        jsonb,
        error         text,
        attempt       integer NOT NULL,
        prediction_id text,
        batch_id      uuid,
        created_at    timestamptz NOT NULL,
        updated_at    timestamptz NOT NULL,
        position      bigint NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS {jobs}_by_user ON {jobs} (user_id, created_at DESC, id DESC)",
    "CREATE INDEX IF NOT EXISTS {jobs}_by_status ON {jobs} (status, created_at DESC, id DESC)",
    "CREATE INDEX IF NOT EXISTS {jobs}_by_batch ON {jobs} (batch_id) WHERE batch_id IS NOT NULL",
)
COLUMNS = ("id", "user_id", "type", "status", "cost", "input", "output", "error", "attempt",
           "prediction_id", "batch_id", "created_at", "updated_at", "position")


def _from_row(row: sa.Row) -> jobs.Job:
    return jobs.Job(id=str(row.id), user_id=str(row.user_id), type=jobs.JobType(row.type),
                    status=jobs.JobStatus(row.status), cost=row.cost, input=row.input,
                    created_at=row.created_at, updated_at=row.updated_at, attempt=row.attempt,
                    output=row.output, error=row.error, prediction_id=row.prediction_id,
                    batch_id=str(row.batch_id) if row.batch_id else None)


# One statement per batch: every column an array, unnested into rows (far cheaper than a
# statement per row, for Python and for PostgreSQL alike).
_UPSERT = (
    "INSERT INTO {table} (" + ", ".join(COLUMNS) + ") "
    "SELECT id, user_id, type, status, cost, CAST(input AS jsonb), CAST(output AS jsonb), error, attempt, "
    "prediction_id, batch_id, created_at, updated_at, position FROM unnest("
    "CAST(:id AS uuid[]), CAST(:user_id AS uuid[]), CAST(:type AS text[]), CAST(:status AS text[]), "
    "CAST(:cost AS int[]), CAST(:input AS text[]), CAST(:output AS text[]), CAST(:error AS text[]), "
    "CAST(:attempt AS int[]), CAST(:prediction_id AS text[]), CAST(:batch_id AS uuid[]), "
    "CAST(:created_at AS timestamptz[]), CAST(:updated_at AS timestamptz[]), CAST(:position AS bigint[])) "
    "AS t(" + ", ".join(COLUMNS) + ") "
    "ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, output = EXCLUDED.output, "
    "error = EXCLUDED.error, attempt = EXCLUDED.attempt, prediction_id = EXCLUDED.prediction_id, "
    "updated_at = EXCLUDED.updated_at, position = EXCLUDED.position"
)


def make(table: str = "jobs") -> Projection:
    upsert = sa.text(_UPSERT.format(table=table))

    async def apply(conn: AsyncConnection, batch: Sequence[Stored]) -> None:
        ids = list(dict.fromkeys(s.event.aggregate_id for s in batch))
        rows = await conn.execute(sa.text(f"SELECT * FROM {table} WHERE id = ANY(CAST(:ids AS uuid[]))"),
                                  {"ids": ids})
        state: dict[str, jobs.Job | None] = {}
        applied: dict[str, int] = {}  # the position each row was written from: events up to it are in it
        for row in rows:
            state[str(row.id)], applied[str(row.id)] = _from_row(row), row.position
        position: dict[str, int] = {}
        for stored in batch:
            job_id = stored.event.aggregate_id
            if stored.seq <= applied.get(job_id, 0):
                continue  # already in the row (a batch applied again after a replay's swap)
            state[job_id] = jobs.evolve(state.get(job_id), stored.event)
            position[job_id] = stored.seq
        params = [_params(job, position[job_id]) for job_id, job in state.items() if job_id in position and job]
        if params:
            await conn.execute(upsert, {column: [p[column] for p in params] for column in COLUMNS})

    return Projection(name="jobs", stream="JOBS", subjects=("job.>",), version=1, tables=(table,),
                      apply=apply, ddl=tuple(s.format(jobs=table) for s in DDL))


def _params(job: jobs.Job, position: int) -> dict:
    return {"id": job.id, "user_id": job.user_id, "type": str(job.type), "status": str(job.status),
            "cost": job.cost, "input": json.dumps(job.input),
            "output": json.dumps(job.output) if job.output is not None else None, "error": job.error,
            "attempt": job.attempt, "prediction_id": job.prediction_id, "batch_id": job.batch_id,
            "created_at": job.created_at, "updated_at": job.updated_at, "position": position}
