from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from genrail_commands.accounts import load_account

from genrail_readmodels import ledger as ledger_table
from ..deps import CurrentUser, DbDep, LogDep
from ..schemas import ERRORS, Credits, Transaction

router = APIRouter(prefix="/credits", tags=["credits"])
SeqCursor = Annotated[str | None, Query(max_length=18, pattern=r"^[1-9][0-9]*$",
                                        description="`next_cursor` of the previous page")]


class TransactionPage(BaseModel):
    items: list[Transaction] = Field(description="Newest first")
    next_cursor: str | None = Field(None, description="Pass as `cursor` to get the next page; null at the end")


@router.get("", response_model=Credits, responses={401: ERRORS[401]},
            summary="Your balance (from the log, always current) and recent transactions")
async def get_credits(user_id: CurrentUser, db: DbDep, log: LogDep) -> Credits:
    account, _ = await load_account(log, user_id)
    rows = await ledger_table.transactions(db, user_id, before_seq=None, limit=20)
    return Credits(balance=account.balance, transactions=[Transaction(**r) for r in rows])


@router.get("/transactions", response_model=TransactionPage, responses={401: ERRORS[401], 422: ERRORS[422]},
            summary="Your whole ledger, newest first: every grant, purchase, job debit, refund, reversal "
                    "and adjustment, with the job or payment it belongs to")
async def list_transactions(user_id: CurrentUser, db: DbDep, cursor: SeqCursor = None,
                            limit: Annotated[int, Query(ge=1, le=200)] = 50) -> TransactionPage:
    before_seq = int(cursor) if cursor else None
    rows = await ledger_table.transactions(db, user_id, before_seq=before_seq, limit=limit + 1)
    items = [Transaction(**r) for r in rows[:limit]]
    return TransactionPage(items=items, next_cursor=str(items[-1].seq) if len(rows) > limit else None)
