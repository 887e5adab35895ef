"""Row-by-row comparison of two tables of the same shape, keyed by the primary key.

Used by `genrail replay --verify` to compare a projection rebuilt from the log (the shadow
table) with the table that serves today. Columns in `ignore` are left out of the
comparison; everything else, including jsonb and timestamps, must be equal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection


@dataclass(frozen=True)
class Difference:
    """One difference: a row only on one side (`column` None) or one column of a row."""

    table: str
    key: dict[str, Any]
    column: str | None
    live: Any
    rebuilt: Any

    def describe(self) -> str:
        key = ", ".join(f"{k}={v}" for k, v in self.key.items()) or "(whole table)"
        if self.column is None:
            where = "only in the rebuilt table" if self.live is None else "only in the live table"
            if not self.key:
                return f"{self.table}: live {self.live}, rebuilt {self.rebuilt}"
            return f"{self.table} [{key}]: row {where}"
        return f"{self.table} [{key}] {self.column}: live {self.live!r}, rebuilt {self.rebuilt!r}"


async def table_exists(conn: AsyncConnection, table: str) -> bool:
    return (await conn.execute(sa.text("SELECT to_regclass(:t) IS NOT NULL"), {"t": table})).scalar_one()


async def primary_key(conn: AsyncConnection, table: str) -> list[str]:
    rows = await conn.execute(sa.text(
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
        "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = CAST(:t AS regclass) AND i.indisprimary "
        "ORDER BY array_position(CAST(i.indkey AS int2[]), a.attnum)"), {"t": table})
    return [r[0] for r in rows]


async def compare(conn: AsyncConnection, live: str, rebuilt: str, *, ignore: tuple[str, ...] = ()) -> list[Difference]:
    """Every difference between `live` and `rebuilt`, in primary-key order."""
    if not await table_exists(conn, live):
        count = (await conn.execute(sa.text(f"SELECT count(*) FROM {rebuilt}"))).scalar_one()
        return [Difference(live, {}, None, "(no table)", f"{count} rows")]
    pk = await primary_key(conn, rebuilt)
    if not pk:
        raise ValueError(f"{rebuilt} has no primary key to compare rows by")
    on = " AND ".join(f"l.{c} = s.{c}" for c in pk)
    order = ", ".join(f"coalesce(l.{c}, s.{c})" for c in pk)
    rows = await conn.execute(sa.text(
        f"SELECT to_jsonb(l) - CAST(:ignore AS text[]) AS l, to_jsonb(s) - CAST(:ignore AS text[]) AS s "
        f"FROM {live} l FULL JOIN {rebuilt} s ON {on} "
        f"WHERE to_jsonb(l) - CAST(:ignore AS text[]) IS DISTINCT FROM to_jsonb(s) - CAST(:ignore AS text[]) "
        f"ORDER BY {order}"), {"ignore": list(ignore)})
    out: list[Difference] = []
    for left, right in rows:
        side = left if left is not None else right
        key = {c: side[c] for c in pk}
        if left is None or right is None:
            out.append(Difference(live, key, None, left, right))
            continue
        for column in sorted(set(left) | set(right)):
            if left.get(column) != right.get(column):
                out.append(Difference(live, key, column, left.get(column), right.get(column)))
    return out
