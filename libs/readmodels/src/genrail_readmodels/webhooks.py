"""The `webhook_messages` and `webhook_attempts` read models, from WEBHOOKS, and the queries
on them: every message genrail sent an account, try by try. (An account's endpoints are a
handful of events each, read from the log itself.)"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from genrail_events import webhooks as ev
from sqlalchemy.ext.asyncio import AsyncConnection

from genrail_eventlog.store import Stored
from genrail_readmodels.runner import Projection

DDL = (
    """CREATE TABLE IF NOT EXISTS {messages} (
        id              text PRIMARY KEY,
        user_id         uuid NOT NULL,
        endpoint_id     text,
        job_id          uuid NOT NULL,
        event_type      text NOT NULL,
        url             text NOT NULL,
        body            text NOT NULL,
        status          text NOT NULL,
        attempts        integer NOT NULL,
        last_attempt_at timestamptz,
        created_at      timestamptz NOT NULL,
        position        bigint NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS {messages}_by_user ON {messages} (user_id, position DESC)",
    "CREATE INDEX IF NOT EXISTS {messages}_by_endpoint ON {messages} (endpoint_id, position DESC)",
    """CREATE TABLE IF NOT EXISTS {attempts} (
        position    bigint PRIMARY KEY,
        message_id  text NOT NULL,
        attempted_at timestamptz NOT NULL,
        url         text NOT NULL,
        delivered   boolean NOT NULL,
        status_code integer,
        outcome     text NOT NULL,
        latency_ms  integer NOT NULL,
        response    text NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS {attempts}_by_message ON {attempts} (message_id, position)",
)


def _message_change(messages: str, attempts: str, stored: Stored) -> list[tuple[str, dict[str, Any]]]:
    event, d = stored.event, stored.event.data  # type: ignore[union-attr]
    if isinstance(event, ev.MessageCreated):
        return [(f"INSERT INTO {messages} (id, user_id, endpoint_id, job_id, event_type, url, body, status, attempts, "
                 f"created_at, position) VALUES (:id, :user_id, :endpoint_id, :job_id, :event_type, :url, :body, "
                 f"'pending', 0, :at, :position) ON CONFLICT (id) DO NOTHING",
                 {"id": d.message_id, "user_id": d.user_id, "endpoint_id": d.endpoint_id, "job_id": d.job_id,
                  "event_type": d.event_type, "url": d.url, "body": d.body, "at": event.occurred_at,
                  "position": stored.seq})]
    if isinstance(event, ev.MessageAttempted):
        status = "delivered" if d.delivered else ("failed" if d.final else "retrying")
        return [(f"INSERT INTO {attempts} (position, message_id, attempted_at, url, delivered, status_code, outcome, "
                 f"latency_ms, response) VALUES (:position, :id, :at, :url, :delivered, :status_code, :outcome, "
                 f":latency_ms, :response) ON CONFLICT (position) DO NOTHING",
                 {"position": stored.seq, "id": d.message_id, "at": event.occurred_at, "url": d.url,
                  "delivered": d.delivered, "status_code": d.status_code, "outcome": d.outcome,
                  "latency_ms": d.latency_ms, "response": d.response}),
                (f"UPDATE {messages} SET status = :status, last_attempt_at = :at, "
                 f"attempts = (SELECT count(*) FROM {attempts} WHERE message_id = :id) WHERE id = :id",
                 {"id": d.message_id, "status": status, "at": event.occurred_at})]
    if isinstance(event, ev.ResendRequested):
        return [(f"UPDATE {messages} SET status = 'pending' WHERE id = :id", {"id": d.message_id})]
    return []


def make(messages: str = "webhook_messages", attempts: str = "webhook_attempts") -> Projection:
    async def apply(conn: AsyncConnection, batch: Sequence[Stored]) -> None:
        for stored in batch:  # few, and each depends on the one before: in order, one by one
            for sql, params in _message_change(messages, attempts, stored):
                await conn.execute(sa.text(sql), params)

    return Projection(name="webhooks", stream="WEBHOOKS", subjects=("webhook.message.>",), version=1,
                      tables=(messages, attempts), apply=apply,
                      ddl=tuple(s.format(messages=messages, attempts=attempts) for s in DDL))


# --- queries ------------------------------------------------------------------------

async def messages_of(conn: AsyncConnection, user_id: str, *, endpoint_id: str | None = None,
                      job_id: str | None = None, status: str | None = None, before: int | None = None,
                      limit: int = 50) -> list[dict[str, Any]]:
    """The account's messages, newest first, with their attempts; `before` pages by position."""
    sql = ("SELECT id, endpoint_id, job_id, event_type, url, status, attempts, last_attempt_at, created_at, position "
           "FROM webhook_messages WHERE user_id = :u")
    params: dict[str, Any] = {"u": user_id, "limit": limit}
    for column, value in (("endpoint_id", endpoint_id), ("status", status)):
        if value is not None:
            sql += f" AND {column} = :{column}"
            params[column] = value
    if job_id is not None:
        sql += " AND job_id = CAST(:job_id AS uuid)"
        params["job_id"] = job_id
    if before is not None:
        sql += " AND position < :before"
        params["before"] = before
    rows = [dict(r._mapping) for r in await conn.execute(sa.text(sql + " ORDER BY position DESC LIMIT :limit"), params)]
    tries = await _attempts(conn, [r["id"] for r in rows])
    return [{**r, "job_id": str(r["job_id"]), "tries": tries.get(r["id"], [])} for r in rows]


async def message(conn: AsyncConnection, user_id: str, message_id: str) -> dict[str, Any] | None:
    row = (await conn.execute(sa.text(
        "SELECT id, endpoint_id, job_id, event_type, url, body, status, attempts, last_attempt_at, created_at, "
        "position FROM webhook_messages WHERE user_id = :u AND id = :id"), {"u": user_id, "id": message_id})).first()
    if row is None:
        return None
    found = dict(row._mapping)
    return {**found, "job_id": str(found["job_id"]), "tries": (await _attempts(conn, [message_id])).get(message_id, [])}


async def _attempts(conn: AsyncConnection, message_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    if not message_ids:
        return {}
    rows = await conn.execute(sa.text(
        "SELECT message_id, attempted_at, url, delivered, status_code, outcome, latency_ms, response "
        "FROM webhook_attempts WHERE message_id = ANY(:ids) ORDER BY position"), {"ids": message_ids})
    found: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        attempt = dict(r._mapping)
        found.setdefault(attempt.pop("message_id"), []).append(attempt)
    return found
