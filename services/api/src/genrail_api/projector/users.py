"""The `users` and `api_keys` read models, from USERS."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from genrail_platform.eventstore import Stored
from genrail_platform.projection import Projection

DDL = (
    """CREATE TABLE IF NOT EXISTS {users} (
        user_id    uuid PRIMARY KEY,
        email      text NOT NULL UNIQUE,
        created_at timestamptz NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS {api_keys} (
        key_hash   text PRIMARY KEY,
        user_id    uuid NOT NULL,
        key_prefix text NOT NULL,
        created_at timestamptz NOT NULL
    )""",
)


def make(users: str = "users", api_keys: str = "api_keys") -> Projection:
    async def apply(conn: AsyncConnection, batch: Sequence[Stored]) -> None:
        registered = [s.event for s in batch if s.event.type == "user.registered"]
        if not registered:
            return
        await conn.execute(sa.text(
            f"INSERT INTO {users} (user_id, email, created_at) VALUES (:user_id, :email, :at) "
            f"ON CONFLICT (user_id) DO NOTHING"),
            [{"user_id": e.data["user_id"], "email": e.data["email"], "at": e.occurred_at} for e in registered])
        await conn.execute(sa.text(
            f"INSERT INTO {api_keys} (key_hash, user_id, key_prefix, created_at) "
            f"VALUES (:key_hash, :user_id, :key_prefix, :at) ON CONFLICT (key_hash) DO NOTHING"),
            [{"key_hash": e.data["key_hash"], "user_id": e.data["user_id"], "key_prefix": e.data["key_prefix"],
              "at": e.occurred_at} for e in registered])

    return Projection(name="users", stream="USERS", subjects=("user.>",), version=1, tables=(users, api_keys),
                      apply=apply, ddl=tuple(s.format(users=users, api_keys=api_keys) for s in DDL))
