from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter

from genrail_readmodels.db import projection_position

from .. import handlers
from ..deps import EngineDep, LogDep, SettingsDep
from ..errors import Conflict
from ..schemas import ERRORS, UserCreate, UserCreated

router = APIRouter(prefix="/api/users", tags=["users"])


@router.post("", status_code=201, response_model=UserCreated, responses={409: ERRORS[409], 422: ERRORS[422]},
             summary="Register a user; returns the API key once and the free credits granted")
async def register(body: UserCreate, log: LogDep, engine: EngineDep, settings: SettingsDep) -> UserCreated:
    try:
        registration = await handlers.register_user(log, body.email, wait_s=settings.read_your_writes_timeout_s)
    except handlers.EmailTaken as exc:
        raise Conflict(str(exc)) from None
    deadline = time.monotonic() + settings.read_your_writes_timeout_s
    while time.monotonic() < deadline:  # the key must work on the very next request
        async with engine.connect() as conn:
            if await projection_position(conn, "users") >= registration.position:
                break
        await asyncio.sleep(0.01)
    return UserCreated(user_id=registration.user_id, email=registration.email, api_key=registration.api_key,
                       balance=registration.balance)
