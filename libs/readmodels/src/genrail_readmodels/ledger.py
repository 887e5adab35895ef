"""The `balances` and `ledger_entries` read models, from LEDGER, and the queries on them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from genrail_events.ledger import LEDGER_EVENTS, CreditsDebited, CreditsPurchased, LedgerEvent, signed_amount
from genrail_eventlog.store import Stored
from genrail_readmodels.runner import Projection

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


def _reason(event: LedgerEvent) -> str | None:
    if isinstance(event, CreditsDebited):
        return f"{event.data.job.type} job"
    if isinstance(event, CreditsPurchased):
        return f"{event.data.pack} pack"
    return getattr(event.data, "reason", None)


ENTRY_COLUMNS = ("seq", "user_id", "kind", "amount", "balance_after", "reason", "job_id", "attempt", "payment_id",
                 "occurred_at")
# One statement per table and batch: every column an array, unnested into rows.
_INSERT_ENTRIES = (
    "INSERT INTO {entries} (" + ", ".join(ENTRY_COLUMNS) + ") SELECT * FROM unnest("
    "CAST(:seq AS bigint[]), CAST(:user_id AS uuid[]), CAST(:kind AS text[]), CAST(:amount AS int[]), "
    "CAST(:balance_after AS int[]), CAST(:reason AS text[]), CAST(:job_id AS uuid[]), CAST(:attempt AS int[]), "
    "CAST(:payment_id AS text[]), CAST(:occurred_at AS timestamptz[])) ON CONFLICT (seq) DO NOTHING"
)
_UPSERT_BALANCES = (
    "INSERT INTO {balances} (user_id, balance, updated_at, position) SELECT * FROM unnest("
    "CAST(:user_id AS uuid[]), CAST(:balance_after AS int[]), CAST(:occurred_at AS timestamptz[]), "
    "CAST(:seq AS bigint[])) ON CONFLICT (user_id) DO UPDATE "
    "SET balance = EXCLUDED.balance, updated_at = EXCLUDED.updated_at, position = EXCLUDED.position "
    "WHERE {balances}.position < EXCLUDED.position"
)


def make(entries: str = "ledger_entries", balances: str = "balances") -> Projection:
    insert_entries = sa.text(_INSERT_ENTRIES.format(entries=entries))
    upsert_balances = sa.text(_UPSERT_BALANCES.format(balances=balances))

    async def apply(conn: AsyncConnection, batch: Sequence[Stored]) -> None:
        rows = [_row(s.seq, s.event) for s in batch if isinstance(s.event, LEDGER_EVENTS)]
        if not rows:
            return
        await conn.execute(insert_entries, _columns(rows, ENTRY_COLUMNS))
        latest = {r["user_id"]: r for r in rows}  # the last entry per user carries the balance
        await conn.execute(upsert_balances, _columns(list(latest.values()),
                                                     ("user_id", "balance_after", "occurred_at", "seq")))

    return Projection(name="ledger", stream="LEDGER", subjects=("ledger.>",), version=1,
                      tables=(entries, balances), apply=apply,
                      ddl=tuple(s.format(entries=entries, balances=balances) for s in DDL))


def _row(seq: int, event: LedgerEvent) -> dict:
    d = event.data
    return {"seq": seq, "user_id": d.user_id, "kind": str(d.kind), "amount": signed_amount(event),
            "balance_after": d.balance_after, "reason": _reason(event), "job_id": getattr(d, "job_id", None),
            "attempt": getattr(d, "attempt", None), "payment_id": getattr(d, "payment_id", None),
            "occurred_at": event.occurred_at}


def _columns(rows: list[dict], names: tuple[str, ...]) -> dict[str, list]:
    return {name: [r[name] for r in rows] for name in names}


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
