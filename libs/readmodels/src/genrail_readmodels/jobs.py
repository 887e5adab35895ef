"""The `jobs` read model: the job aggregate's `evolve` folded over JOBS, one row per job;
and the queries other processes run on it."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from genrail_events import jobs
from genrail_eventlog.store import Stored
from genrail_readmodels.runner import Projection

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


# --- queries ------------------------------------------------------------------------
# Cursor paging: newest first, stable.

class BadCursor(ValueError):
    pass


def encode_cursor(created_at: datetime, job_id: str) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{job_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created_at, job_id = raw.split("|", 1)
        return datetime.fromisoformat(created_at), job_id
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadCursor("cursor is not one this API returned") from exc


def row_to_dict(row: sa.Row) -> dict[str, Any]:
    return {"id": str(row.id), "user_id": str(row.user_id), "type": row.type, "status": row.status,
            "cost": row.cost, "input": row.input, "output": row.output, "error": row.error,
            "attempt": row.attempt, "batch_id": str(row.batch_id) if row.batch_id else None,
            "prediction_id": row.prediction_id, "created_at": row.created_at, "updated_at": row.updated_at}


def job_to_dict(job: jobs.Job) -> dict[str, Any]:
    return {"id": job.id, "user_id": job.user_id, "type": str(job.type), "status": str(job.status),
            "cost": job.cost, "input": job.input, "output": job.output, "error": job.error,
            "attempt": job.attempt, "batch_id": job.batch_id, "prediction_id": job.prediction_id,
            "created_at": job.created_at, "updated_at": job.updated_at}


async def get_job(conn: AsyncConnection, job_id: str) -> dict[str, Any] | None:
    row = (await conn.execute(sa.text("SELECT * FROM jobs WHERE id = :id"), {"id": job_id})).first()
    return row_to_dict(row) if row else None


async def list_jobs(conn: AsyncConnection, *, user_id: str | None, status: str | None, job_type: str | None,
                    cursor: str | None, limit: int, created_after: datetime | None = None,
                    created_before: datetime | None = None) -> tuple[list[dict[str, Any]], str | None]:
    where, params = [], {"limit": limit + 1}
    filters = (("user_id = :user_id", "user_id", user_id), ("status = :status", "status", status),
               ("type = :type", "type", job_type), ("created_at > :after", "after", created_after),
               ("created_at < :before", "before", created_before))
    for clause, name, value in filters:
        if value is not None:
            where.append(clause)
            params[name] = value
    if cursor is not None:
        params["c_at"], params["c_id"] = decode_cursor(cursor)
        where.append("(created_at, id) < (:c_at, CAST(:c_id AS uuid))")
    sql = "SELECT * FROM jobs" + (" WHERE " + " AND ".join(where) if where else "")
    sql += " ORDER BY created_at DESC, id DESC LIMIT :limit"
    rows = [row_to_dict(r) for r in await conn.execute(sa.text(sql), params)]
    next_cursor = encode_cursor(rows[limit - 1]["created_at"], rows[limit - 1]["id"]) if len(rows) > limit else None
    return rows[:limit], next_cursor


async def of_batch(conn: AsyncConnection, batch_id: str) -> list[dict[str, Any]]:
    rows = await conn.execute(sa.text("SELECT * FROM jobs WHERE batch_id = :b"), {"b": batch_id})
    return [row_to_dict(r) for r in rows]


async def status_counts_of_batches(conn: AsyncConnection, batch_ids: list[str]) -> dict[str, dict[str, int]]:
    """For each batch, how many of its image jobs are in each status."""
    counts: dict[str, dict[str, int]] = {batch_id: {} for batch_id in batch_ids}
    if batch_ids:
        rows = await conn.execute(sa.text(
            "SELECT batch_id, status, count(*) FROM jobs WHERE batch_id = ANY(CAST(:ids AS uuid[])) "
            "GROUP BY batch_id, status"), {"ids": batch_ids})
        for batch_id, status, n in rows:
            counts[str(batch_id)][status] = n
    return counts


async def overdue(conn: AsyncConnection, deadlines_s: Mapping[str, float], unstarted_s: float, *,
                  limit: int = 500) -> list[str]:
    """Ids of jobs past their deadline and not final: `processing` jobs of each type not
    updated for longer than that type's deadline, and `pending` or `queued` ones not updated
    for `unstarted_s` (candidates only: the caller decides on the job's state read from the log)."""
    ids: list[str] = []
    for job_type, deadline_s in sorted(deadlines_s.items()):
        rows = await conn.execute(sa.text(
            "SELECT id FROM jobs WHERE status = 'processing' AND type = :t "
            "AND updated_at < now() - make_interval(secs => :d) LIMIT :limit"),
            {"t": job_type, "d": deadline_s, "limit": limit})
        ids += [str(r.id) for r in rows]
    rows = await conn.execute(sa.text(
        "SELECT id FROM jobs WHERE status IN ('pending', 'queued') "
        "AND updated_at < now() - make_interval(secs => :d) LIMIT :limit"), {"d": unstarted_s, "limit": limit})
    return ids + [str(r.id) for r in rows]
