"""/keys: the user's API keys: list, create (the key shown once), revoke."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse
from genrail_events.accounts import AccountRefused, KeyNotFound

from ..deps import DbDep
from ..errors import NotFound, Unprocessable
from .auth import Csrf, PageUser
from .problems import shows_errors
from .templating import render

router = APIRouter()


async def _keys_page(request, user_id: str, db, *, created: dict | None = None, status_code: int = 200):
    from ..accounts import keys

    return await render(request, "keys.html", {"keys": await keys.list_keys(db, user_id), "created": created},
                        status_code)


@router.get("/keys")
@shows_errors
async def key_list(request: Request, user_id: PageUser, db: DbDep):
    return await _keys_page(request, user_id, db)


@router.post("/keys", dependencies=[Csrf])
@shows_errors
async def create(request: Request, user_id: PageUser, db: DbDep,
                 name: Annotated[str, Form()] = ""):
    from ..accounts import keys

    name = name.strip()
    if not name:
        raise Unprocessable("name: give the key a name, so you know later where it is used")
    try:
        key_id, api_key = await keys.create_key_now(request, user_id, name)
    except AccountRefused as exc:
        raise Unprocessable(str(exc)) from None
    # Shown on this answer only: it is not stored anywhere it could be read again.
    return await _keys_page(request, user_id, db, created={"id": key_id, "name": name, "api_key": api_key},
                            status_code=201)


@router.post("/keys/{key_id}/revoke", dependencies=[Csrf])
@shows_errors
async def revoke(key_id: str, request: Request, user_id: PageUser):
    from ..accounts import keys

    try:
        await keys.revoke_key_now(request, user_id, key_id)
    except KeyNotFound:
        raise NotFound(f"key {key_id} not found") from None
    return RedirectResponse("/keys", status_code=303)
