"""An account's API keys: made (the key shown once, only its hash on the log), listed with
their last use, revoked. The studio's keys page and the JSON API `/v1/keys` both use these.

A key change decides over the account's key events and appends expecting the last sequence of
the account's events, so two concurrent changes cannot both pass the same check (the key limit).
Each change waits until the `users` projection holds it: a new key works on the very next
request, and a revoked key stops working here at once (this process's KeyCache forgets it;
other API processes' caches hold it for at most their TTL, 30 s)."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response
from genrail_eventlog.store import EventStore, retry_on_conflict
from genrail_events import accounts, users
from genrail_readmodels import users as users_table
from genrail_readmodels.db import wait_for_position
from genrail_runtime.logs import event as log_event
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncConnection

from ..deps import CurrentUser, DbDep
from ..errors import Conflict, NotFound, Unprocessable
from ..schemas import ERRORS
from . import usage

log = logging.getLogger("genrail.api.accounts")


async def load_ring(store: EventStore, user_id: str) -> tuple[accounts.KeyRing, int]:
    """The account's keys, and the last sequence of its events to expect on an append."""
    seq = await store.last_seq(accounts.account_events(user_id))
    stored = [*await store.read(users.registered_subject(user_id)),
              *await store.read(accounts.key_created_subject(user_id)),
              *await store.read(accounts.key_revoked_subject(user_id))]
    ring = accounts.KeyRing(user_id)
    for s in sorted(stored, key=lambda s: s.seq):
        ring = accounts.evolve(ring, s.event)
    return ring, seq


async def _append(store: EventStore, user_id: str, decide) -> tuple[Any, int | None]:
    """Decide over the current ring and append; (event or None, its sequence)."""
    async def attempt():
        ring, seq = await load_ring(store, user_id)
        event = decide(ring)
        if event is None:
            return None, None
        subject = (accounts.key_created_subject(user_id) if isinstance(event, accounts.KeyCreated)
                   else accounts.key_revoked_subject(user_id))
        appended = await store.append(subject, event, expect_last_seq=seq,
                                      expect_filter=accounts.account_events(user_id))
        return event, appended.seq

    return await retry_on_conflict(attempt)


async def create_key(store: EventStore, user_id: str, name: str) -> tuple[str, str, int]:
    """(key_id, api_key, sequence). AccountRefused: a bad name, too many keys."""
    api_key = users.new_api_key()
    event, seq = await _append(store, user_id, lambda ring: accounts.decide_create_key(ring, name, api_key))
    log_event(log, "api_key.created", user_id=user_id, key_id=event.data.key_id)
    return event.data.key_id, api_key, seq


async def revoke_key(store: EventStore, user_id: str, key_id: str) -> tuple[str, int | None]:
    """(the key's hash, the revocation's sequence or None when it was revoked already).
    KeyNotFound when the account has no such key."""
    hashes: list[str] = []

    def decide(ring: accounts.KeyRing):
        event = accounts.decide_revoke_key(ring, key_id)
        hashes.append(ring.keys[key_id].key_hash)
        return event

    event, seq = await _append(store, user_id, decide)
    if event is not None:
        log_event(log, "api_key.revoked", user_id=user_id, key_id=key_id)
    return hashes[-1], seq


async def list_keys(db: AsyncConnection, user_id: str) -> list[dict[str, Any]]:
    rows = await users_table.keys_of(db, user_id)
    used = await usage.last_used(db, [r.key_hash for r in rows])
    return [{"key_id": r.key_id, "name": r.name, "prefix": r.key_prefix, "created_at": r.created_at,
             "last_used_at": used.get(r.key_hash), "revoked_at": r.revoked_at} for r in rows]


async def create_key_now(request: Request, user_id: str, name: str) -> tuple[str, str]:
    """`create_key`, then wait until the key authenticates (read your writes)."""
    resources, settings = request.app.state.resources, request.app.state.settings
    key_id, api_key, seq = await create_key(resources.store, user_id, name)
    await wait_for_position(resources.engine, "users", seq, settings.read_your_writes_timeout_s)
    return key_id, api_key


async def revoke_key_now(request: Request, user_id: str, key_id: str) -> None:
    """`revoke_key`, then wait until the database refuses it and forget it in this process."""
    resources, settings = request.app.state.resources, request.app.state.settings
    key_hash, seq = await revoke_key(resources.store, user_id, key_id)
    if seq is not None:
        await wait_for_position(resources.engine, "users", seq, settings.read_your_writes_timeout_s)
    resources.key_cache.forget(key_hash)


# --- the JSON API -------------------------------------------------------------------------------

router = APIRouter(prefix="/keys", tags=["keys"])
KeyId = Annotated[str, Path(pattern=r"^[0-9a-f]{16}$", description="The key's id", examples=["3f9a1c0b7d2e4a68"])]


class KeyCreate(BaseModel):
    name: str = Field(min_length=1, max_length=accounts.MAX_KEY_NAME_CHARS, examples=["ci"],
                      description="What the key is for: shown in the list, never secret")


class KeyPublic(BaseModel):
    key_id: str = Field(examples=["3f9a1c0b7d2e4a68"])
    name: str = Field(examples=["ci"], description="`default` for the key registration returned")
    prefix: str = Field(examples=["gr_Q2xv"], description="The key's first characters, to recognize it")
    created_at: datetime
    last_used_at: datetime | None = Field(None, description="Last request with this key (to the minute); null: "
                                                            "never used since usage is recorded")
    revoked_at: datetime | None = Field(None, description="Null while the key works")


class KeyWithSecret(BaseModel):
    key_id: str = Field(examples=["3f9a1c0b7d2e4a68"])
    name: str = Field(examples=["ci"])
    prefix: str = Field(examples=["gr_Q2xv"])
    api_key: str = Field(examples=["gr_Q2xvY2tzLWFyZS1ub3Qtc2VjcmV0cy1idXQtdGhpcy1pcw"],
                         description="The key itself: shown this once, only its hash is kept")


class KeyList(BaseModel):
    items: list[KeyPublic]


@router.get("", response_model=KeyList, responses={401: ERRORS[401]},
            summary="Your API keys, revoked ones too, with their last use")
async def list_api_keys(user_id: CurrentUser, db: DbDep) -> KeyList:
    return KeyList(items=[KeyPublic(**k) for k in await list_keys(db, user_id)])


@router.post("", status_code=201, response_model=KeyWithSecret,
             responses={401: ERRORS[401], 409: ERRORS[409], 422: ERRORS[422]},
             summary="Make a new API key; the key is in this answer only")
async def create_api_key(body: KeyCreate, user_id: CurrentUser, request: Request) -> KeyWithSecret:
    try:
        key_id, api_key = await create_key_now(request, user_id, body.name)
    except accounts.AccountRefused as exc:
        raise (Conflict if "at most" in str(exc) else Unprocessable)(str(exc)) from None
    return KeyWithSecret(key_id=key_id, name=body.name.strip(), prefix=api_key[:8], api_key=api_key)


@router.delete("/{key_id}", status_code=204, responses={401: ERRORS[401], 404: ERRORS[404], 422: ERRORS[422]},
               summary="Revoke an API key: it stops working at once (within 30 s on every API process); "
                       "revoking it again does nothing")
async def revoke_api_key(key_id: KeyId, user_id: CurrentUser, request: Request) -> Response:
    try:
        await revoke_key_now(request, user_id, key_id)
    except accounts.KeyNotFound:
        raise NotFound(f"API key {key_id} not found") from None
    return Response(status_code=204)
