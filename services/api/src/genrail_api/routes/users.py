from __future__ import annotations


from fastapi import APIRouter, Request

from genrail_readmodels.db import wait_for_position

from .. import handlers, rate_limits
from ..deps import EngineDep, LogDep, SettingsDep
from ..errors import Conflict
from ..schemas import ERRORS, UserCreate, UserCreated

router = APIRouter(prefix="/users", tags=["users"])


@router.post("", status_code=201, response_model=UserCreated,
             responses={409: ERRORS[409], 422: ERRORS[422], 429: ERRORS[429]},
             summary="Register a user; returns the API key once and the free credits granted")
async def register(body: UserCreate, request: Request, log: LogDep, engine: EngineDep,
                   settings: SettingsDep) -> UserCreated:
    address = request.client.host if request.client else "unknown"
    await rate_limits.hit(engine, f"signup:{address}", limit=settings.signups_per_hour_per_address, window_s=3600,
                          what="registrations from one address")
    try:
        grant_wait_s = settings.read_your_writes_timeout_s if settings.grants_on("registration") else 0
        registration = await handlers.register_user(log, body.email, grant_wait_s=grant_wait_s)
    except handlers.EmailTaken as exc:
        raise Conflict(str(exc)) from None
    # the key must work on the very next request
    await wait_for_position(engine, "users", registration.position, settings.read_your_writes_timeout_s)
    return UserCreated(user_id=registration.user_id, email=registration.email, api_key=registration.api_key,
                       balance=registration.balance)
