"""The `users` and `api_keys` read models, from USERS, and the queries on them.

Every key that authenticates is a row of `api_keys`: the one `user.registered` carries (named
"default") and each `user.key_created`. What came later is in tables of its own, so that
`api_keys` stays what older logs built: a created key's name in `api_key_names`, a revocation
in `api_key_revocations` (a key's id is the start of its hash: `genrail_events.accounts`)."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from genrail_eventlog.store import Stored
from genrail_events.accounts import KeyCreated, KeyRevoked
from genrail_events.users import UserRegistered
from sqlalchemy.ext.asyncio import AsyncConnection

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
    """CREATE TABLE IF NOT EXISTS {api_key_names} (
        key_hash   text PRIMARY KEY,
        key_id     text NOT NULL,
        user_id    uuid NOT NULL,
        name       text NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS {api_key_revocations} (
        user_id    uuid NOT NULL,
        key_id     text NOT NULL,
        revoked_at timestamptz NOT NULL,
        PRIMARY KEY (user_id, key_id)
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
_INSERT_NAMES = (
    "INSERT INTO {api_key_names} (key_hash, key_id, user_id, name) SELECT * FROM unnest("
    "CAST(:key_hash AS text[]), CAST(:key_id AS text[]), CAST(:user_id AS uuid[]), CAST(:name AS text[])) "
    "ON CONFLICT (key_hash) DO NOTHING"
)
_INSERT_REVOCATIONS = (
    "INSERT INTO {api_key_revocations} (user_id, key_id, revoked_at) SELECT * FROM unnest("
    "CAST(:user_id AS uuid[]), CAST(:key_id AS text[]), CAST(:at AS timestamptz[])) "
    "ON CONFLICT (user_id, key_id) DO NOTHING"
)


def make(users: str = "users", api_keys: str = "api_keys", api_key_names: str = "api_key_names",
         api_key_revocations: str = "api_key_revocations") -> Projection:
    insert_users = sa.text(_INSERT_USERS.format(users=users))
    insert_keys = sa.text(_INSERT_KEYS.format(api_keys=api_keys))
    insert_names = sa.text(_INSERT_NAMES.format(api_key_names=api_key_names))
    insert_revocations = sa.text(_INSERT_REVOCATIONS.format(api_key_revocations=api_key_revocations))

    async def apply(conn: AsyncConnection, batch: Sequence[Stored]) -> None:
        registered = [s.event for s in batch if isinstance(s.event, UserRegistered)]
        created = [s.event for s in batch if isinstance(s.event, KeyCreated)]
        revoked = [s.event for s in batch if isinstance(s.event, KeyRevoked)]
        if registered:
            await conn.execute(insert_users, {"user_id": [e.data.user_id for e in registered],
                                              "email": [e.data.email for e in registered],
                                              "at": [e.occurred_at for e in registered]})
        keys = [(e.data.key_hash, e.data.user_id, e.data.key_prefix, e.occurred_at) for e in (*registered, *created)]
        if keys:
            await conn.execute(insert_keys, {"key_hash": [k[0] for k in keys], "user_id": [k[1] for k in keys],
                                             "key_prefix": [k[2] for k in keys], "at": [k[3] for k in keys]})
        if created:
            await conn.execute(insert_names, {"key_hash": [e.data.key_hash for e in created],
                                              "key_id": [e.data.key_id for e in created],
                                              "user_id": [e.data.user_id for e in created],
                                              "name": [e.data.name for e in created]})
        if revoked:
            await conn.execute(insert_revocations, {"user_id": [e.data.user_id for e in revoked],
                                                    "key_id": [e.data.key_id for e in revoked],
                                                    "at": [e.occurred_at for e in revoked]})

    tables = {"users": users, "api_keys": api_keys, "api_key_names": api_key_names,
              "api_key_revocations": api_key_revocations}
    return Projection(name="users", stream="USERS", subjects=("user.>",), version=1, tables=tuple(tables.values()),
                      apply=apply, ddl=tuple(s.format(**tables) for s in DDL))


async def user_for_key_hash(conn: AsyncConnection, key_hash: str) -> str | None:
    """The user a key belongs to, unless the key was revoked."""
    row = (await conn.execute(sa.text(
        "SELECT k.user_id FROM api_keys k WHERE k.key_hash = :h AND NOT EXISTS (SELECT 1 FROM api_key_revocations r "
        "WHERE r.user_id = k.user_id AND r.key_id = left(k.key_hash, 16))"), {"h": key_hash})).first()
    return str(row.user_id) if row else None


async def keys_of(conn: AsyncConnection, user_id: str) -> list[sa.Row]:
    """Every key of a user, revoked ones too, oldest first: key_id, key_hash, name, key_prefix,
    created_at, revoked_at."""
    return list((await conn.execute(sa.text(
        "SELECT left(k.key_hash, 16) AS key_id, k.key_hash, coalesce(n.name, 'default') AS name, k.key_prefix, "
        "k.created_at, r.revoked_at FROM api_keys k LEFT JOIN api_key_names n ON n.key_hash = k.key_hash "
        "LEFT JOIN api_key_revocations r ON r.user_id = k.user_id AND r.key_id = left(k.key_hash, 16) "
        "WHERE k.user_id = CAST(:u AS uuid) ORDER BY k.created_at, k.key_hash"), {"u": user_id})).all())
