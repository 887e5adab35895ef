"""The `users` and `api_keys` read models, from USERS, and the queries on them."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from genrail_events.users import UserRegistered
from sqlalchemy.ext.asyncio import AsyncConnection

from genrail_eventlog.store import Stored
from genrail_readmodels.runner import Projection

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


# One statement per table and batch: every column an array, unnested into rows.
_INSERT_USERS = (
    "INSERT INTO {users} (user_id, email, created_at) SELECT * FROM unnest("
    "CAST(:user_id AS uuid[]), CAST(:email AS text[]), CAST(:at AS timestamptz[])) ON CONFLICT (user_id) DO NOTHING"
)
_INSERT_KEYS = (
    "INSERT INTO {api_keys} (key_hash, user_id, key_prefix, created_at) SELECT * FROM unnest("
    "CAST(:key_hash AS text[]), CAST(:user_id AS uuid[]), CAST(:key_prefix AS text[]), CAST(:at AS timestamptz[])) "
    "ON CONFLICT (key_hash) DO NOTHING"
)


def make(users: str = "users", api_keys: str = "api_keys") -> Projection:
    insert_users = sa.text(_INSERT_USERS.format(users=users))
    insert_keys = sa.text(_INSERT_KEYS.format(api_keys=api_keys))

    async def apply(conn: AsyncConnection, batch: Sequence[Stored]) -> None:
        registered = [s.event.data for s in batch if isinstance(s.event, UserRegistered)]
        if not registered:
            return
        at = [s.event.occurred_at for s in batch if isinstance(s.event, UserRegistered)]
        await conn.execute(insert_users, {"user_id": [d.user_id for d in registered],
                                          "email": [d.email for d in registered], "at": at})
        await conn.execute(insert_keys, {"key_hash": [d.key_hash for d in registered],
                                         "user_id": [d.user_id for d in registered],
                                         "key_prefix": [d.key_prefix for d in registered], "at": at})

    return Projection(name="users", stream="USERS", subjects=("user.>",), version=1, tables=(users, api_keys),
                      apply=apply, ddl=tuple(s.format(users=users, api_keys=api_keys) for s in DDL))


async def user_for_key_hash(conn: AsyncConnection, key_hash: str) -> str | None:
    row = (await conn.execute(sa.text("SELECT user_id FROM api_keys WHERE key_hash = :h"), {"h": key_hash})).first()
    return str(row.user_id) if row else None
