"""The `batches` read model, from BATCHES. Progress is not stored here: it is the `jobs`
projection's rows of the batch (built from the job events), counted when asked."""

from __future__ import annotations

import json
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from genrail_platform.eventstore import Stored
from genrail_platform.projection import Projection

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
        rows = [{"id": s.event.data["batch_id"], "user_id": s.event.data["user_id"], "prompt": s.event.data["prompt"],
                 "total": len(s.event.data["job_ids"]), "image_keys": json.dumps(s.event.data["image_keys"]),
                 "job_ids": json.dumps(s.event.data["job_ids"]), "cost_per_image": s.event.data["cost_per_image"],
                 "created_at": s.event.occurred_at, "position": s.seq}
                for s in batch if s.event.type == "batch.created"]
        if rows:
            await conn.execute(sa.text(
                f"INSERT INTO {batches} (id, user_id, prompt, total, image_keys, job_ids, cost_per_image, created_at, "
                f"position) VALUES (:id, :user_id, :prompt, :total, CAST(:image_keys AS jsonb), "
                f"CAST(:job_ids AS jsonb), :cost_per_image, :created_at, :position) ON CONFLICT (id) DO NOTHING"), rows)

    return Projection(name="batches", stream="BATCHES", subjects=("batch.>",), version=1, tables=(batches,),
                      apply=apply, ddl=tuple(s.format(batches=batches) for s in DDL))
