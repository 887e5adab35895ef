"""Queries on the projections the API serves. Cursor paging: newest first, stable."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from genrail_events import jobs


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


def job_row_to_dict(row: sa.Row) -> dict[str, Any]:
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
    return job_row_to_dict(row) if row else None


async def list_jobs(conn: AsyncConnection, *, user_id: str | None, status: str | None, job_type: str | None,
                    cursor: str | None, limit: int) -> tuple[list[dict[str, Any]], str | None]:
    where, params = [], {"limit": limit + 1}
    if user_id is not None:
        where.append("user_id = :user_id")
        params["user_id"] = user_id
    if status is not None:
        where.append("status = :status")
        params["status"] = status
    if job_type is not None:
        where.append("type = :type")
        params["type"] = job_type
    if cursor is not None:
        params["c_at"], params["c_id"] = decode_cursor(cursor)
        where.append("(created_at, id) < (:c_at, CAST(:c_id AS uuid))")
    sql = "SELECT * FROM jobs" + (" WHERE " + " AND ".join(where) if where else "")
    sql += " ORDER BY created_at DESC, id DESC LIMIT :limit"
    rows = [job_row_to_dict(r) for r in await conn.execute(sa.text(sql), params)]
    next_cursor = encode_cursor(rows[limit - 1]["created_at"], rows[limit - 1]["id"]) if len(rows) > limit else None
    return rows[:limit], next_cursor


async def user_for_key_hash(conn: AsyncConnection, key_hash: str) -> str | None:
    row = (await conn.execute(sa.text("SELECT user_id FROM api_keys WHERE key_hash = :h"), {"h": key_hash})).first()
    return str(row.user_id) if row else None


async def transactions(conn: AsyncConnection, user_id: str, *, before_seq: int | None, limit: int) -> list[dict]:
    sql = "SELECT * FROM ledger_entries WHERE user_id = :u"
    params: dict[str, Any] = {"u": user_id, "limit": limit}
    if before_seq is not None:
        sql += " AND seq < :before"
        params["before"] = before_seq
    rows = await conn.execute(sa.text(sql + " ORDER BY seq DESC LIMIT :limit"), params)
    return [{"seq": r.seq, "kind": r.kind, "amount": r.amount, "balance_after": r.balance_after,
             "reason": r.reason, "job_id": str(r.job_id) if r.job_id else None, "attempt": r.attempt,
             "payment_id": r.payment_id, "occurred_at": r.occurred_at} for r in rows]


async def projection_position(conn: AsyncConnection, name: str) -> int:
    row = (await conn.execute(sa.text("SELECT position FROM projection_checkpoints WHERE name = :n"),
                              {"n": name})).first()
    return row[0] if row else 0
