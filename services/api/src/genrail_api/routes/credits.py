from __future__ import annotations

from fastapi import APIRouter

from genrail_platform.accounts import load_account

from .. import read_models
from ..deps import CurrentUser, DbDep, LogDep
from ..schemas import ERRORS, Credits, Transaction

router = APIRouter(prefix="/api/credits", tags=["credits"])


@router.get("", response_model=Credits, responses={401: ERRORS[401]},
            summary="Your balance (from the log, always current) and recent transactions")
async def get_credits(user_id: CurrentUser, db: DbDep, log: LogDep) -> Credits:
    account, _ = await load_account(log, user_id)
    rows = await read_models.transactions(db, user_id, before_seq=None, limit=20)
    return Credits(balance=account.balance, transactions=[Transaction(**r) for r in rows])
