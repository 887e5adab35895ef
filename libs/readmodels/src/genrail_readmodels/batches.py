"""The `batches` read model, from BATCHES, and the queries on it. A batch's progress is not
stored here: it is its image jobs' rows in `jobs`, counted on read."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from genrail_events.batches import BatchCreated
from sqlalchemy.ext.asyncio import AsyncConnection

from genrail_eventlog.store import Stored
from genrail_readmodels.runner import Projection

DDL = (
    """CREATE TABLE IF NOT EXISTS {batches} (
        id             uuid PRIMARY KEY,
        user_id        uuid NOT NULL,
        prompt         text NOT NULL,
        total          integer NOT NULL,
        image_keys     jsonb NOT NULL,
        job_ids        jsonb NOT NULL,
        cost_per_image integer NOT NULL,
        created_at     timestamptz NOT NULL,
        position       bigint NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS {batches}_by_user ON {batches} (user_id, created_at DESC, id DESC)",
)


def make(batches: str = "batches") -> Projection:
    async def apply(conn: AsyncConnection, batch: Sequence[Stored]) -> None:
        rows = [{"id": s.event.data.batch_id, "user_id": s.event.data.user_id, "prompt": s.event.data.prompt,
                 "total": len(s.event.data.job_ids), "image_keys": json.dumps(s.event.data.image_keys),
                 "job_ids": json.dumps(s.event.data.job_ids), "cost_per_image": s.event.data.cost_per_image,
                 "created_at": s.event.occurred_at, "position": s.seq}
                for s in batch if isinstance(s.event, BatchCreated)]
        if rows:
            await conn.execute(sa.text(
                f"INSERT INTO {batches} (id, user_id, prompt, total, image_keys, job_ids, cost_per_image, created_at, "
                f"position) VALUES (:id, :user_id, :prompt, :total, CAST(:image_keys AS jsonb), "
                f"CAST(:job_ids AS jsonb), :cost_per_image, :created_at, :position) ON CONFLICT (id) DO NOTHING"), rows)

    return Projection(name="batches", stream="BATCHES", subjects=("batch.>",), version=1, tables=(batches,),
                      apply=apply, ddl=tuple(s.format(batches=batches) for s in DDL))


async def get(conn: AsyncConnection, batch_id: str) -> dict[str, Any] | None:
    row = (await conn.execute(sa.text("SELECT * FROM batches WHERE id = :id"), {"id": batch_id})).first()
    if row is None:
        return None
    return {"id": str(row.id), "user_id": str(row.user_id), "prompt": row.prompt, "image_keys": row.image_keys,
            "job_ids": row.job_ids, "cost_per_image": row.cost_per_image, "created_at": row.created_at}


async def list_for_user(conn: AsyncConnection, user_id: str, *, before: str | None, limit: int) -> list[dict[str, Any]]:
    """The user's batches, newest first; `before` is the id of the last batch of the previous page."""
    sql = "SELECT id, prompt, total, created_at FROM batches WHERE user_id = :u"
    params: dict[str, Any] = {"u": user_id, "limit": limit}
    if before is not None:
        sql += " AND (created_at, id) < (SELECT created_at, id FROM batches WHERE id = CAST(:before AS uuid))"
        params["before"] = before
    rows = await conn.execute(sa.text(sql + " ORDER BY created_at DESC, id DESC LIMIT :limit"), params)
    return [dict(r._mapping) for r in rows]
