"""Users and their API keys. A user's id derives from their email, so registering the
same email twice collides on `user.registered.<user_id>` and the log refuses the second."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import datetime

from . import subjects
from .envelope import Event, Payload, utcnow

USER_ID_NAMESPACE = uuid.UUID("0d6e5a1c-7c55-4a8e-8f7e-8f0f3c9b6a21")
KEY_PREFIX = "gr_"


def normalize_email(email: str) -> str:
    return email.strip().lower()


def user_id_for(email: str) -> str:
    return str(uuid.uuid5(USER_ID_NAMESPACE, normalize_email(email)))


def new_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(api_key: str) -> str:
    """Keys are long random secrets, so one fast hash is enough (no password stretching)."""
    return hashlib.sha256(api_key.encode()).hexdigest()


class UserRegisteredData(Payload, frozen=True, kw_only=True):
    user_id: str
    email: str
    key_hash: str
    key_prefix: str


class UserRegistered(Event, tag="user.registered", frozen=True, kw_only=True):
    data: UserRegisteredData


def user_registered(email: str, api_key: str, now: datetime | None = None) -> UserRegistered:
    user_id = user_id_for(email)
    return UserRegistered(aggregate_id=user_id, occurred_at=now or utcnow(),
                          data=UserRegisteredData(user_id=user_id, email=normalize_email(email),
                                                  key_hash=hash_api_key(api_key), key_prefix=api_key[:8]))


def registered_subject(user_id: str) -> str:
    return subjects.user("registered", user_id)
