"""The `balances` and `ledger_entries` read models, from LEDGER."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from genrail_events.ledger import signed_amount
from genrail_platform.eventstore import Stored
from genrail_platform.projection import Projection

DDL = (
    """CREATE TABLE IF NOT EXISTS {entries} (
        seq           bigint PRIMARY KEY,
        user_id       uuid NOT NULL,
        kind          text NOT NULL,
        amount        integer NOT NULL,
        balance_after integer NOT NULL,
        reason        text,
        job_id        uuid,
        attempt       integer,
        payment_id    text,
        occurred_at   timestamptz NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS {entries}_by_user ON {entries} (user_id, seq DESC)",
    """CREATE TABLE IF NOT EXISTS {balances} (
        user_id    uuid PRIMARY KEY,
        balance    integer NOT NULL,
        updated_at timestamptz NOT NULL,
        position   bigint NOT NULL
    )""",
)


def _reason(data: dict) -> str | None:
    if data["kind"] == "debited":
        return f"{data['job']['type']} job"
    if data["kind"] == "purchased":
        return f"{data.get('pack')} pack"
    return data.get("reason")


def make(entries: str = "ledger_entries", balances: str = "balances") -> Projection:
    async def apply(conn: AsyncConnection, batch: Sequence[Stored]) -> None:
        rows = [{"seq": s.seq, "user_id": s.event.data["user_id"], "kind": s.event.data["kind"],
                 "amount": signed_amount(s.event), "balance_after": s.event.data["balance_after"],
                 "reason": _reason(s.event.data), "job_id": s.event.data.get("job_id"),
                 "attempt": s.event.data.get("attempt"), "payment_id": s.event.data.get("payment_id"),
                 "occurred_at": s.event.occurred_at} for s in batch]
        await conn.execute(sa.text(
            f"INSERT INTO {entries} (seq, user_id, kind, amount, balance_after, reason, job_id, attempt, "
            f"payment_id, occurred_at) VALUES (:seq, :user_id, :kind, :amount, :balance_after, :reason, "
            f":job_id, :attempt, :payment_id, :occurred_at) ON CONFLICT (seq) DO NOTHING"), rows)
        latest = {r["user_id"]: r for r in rows}  # the last entry per user carries the balance
        await conn.execute(sa.text(
            f"INSERT INTO {balances} (user_id, balance, updated_at, position) "
            f"VALUES (:user_id, :balance_after, :occurred_at, :seq) ON CONFLICT (user_id) DO UPDATE "
            f"SET balance = EXCLUDED.balance, updated_at = EXCLUDED.updated_at, position = EXCLUDED.position "
            f"WHERE {balances}.position < EXCLUDED.position"), list(latest.values()))

    return Projection(name="ledger", stream="LEDGER", subjects=("ledger.>",), version=1,
                      tables=(entries, balances), apply=apply,
                      ddl=tuple(s.format(entries=entries, balances=balances) for s in DDL))
