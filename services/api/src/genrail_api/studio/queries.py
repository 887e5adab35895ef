"""Read-model lookups only the studio's pages need."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection


async def ledger_entries_of(conn: AsyncConnection, user_id: str, job_id: str) -> list[dict]:
    """The charges and refunds of one job (or batch), oldest first."""
    rows = await conn.execute(sa.text("SELECT seq, kind, amount, balance_after, reason, attempt, occurred_at "
                                      "FROM ledger_entries WHERE user_id = :u AND job_id = :j ORDER BY seq"),
                              {"u": user_id, "j": job_id})
    return [dict(r._mapping) for r in rows]
