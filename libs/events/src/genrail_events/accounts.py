"""A user's account beyond registration: API keys made and revoked, sign-ins, "sign out
everywhere", and the single use of an emailed sign-in link. All on the USERS stream.

Subjects: `user.<kind>.<user_id>`, and `user.link_used.<user_id>.<link_id>`, appended only while
nothing is on it, so a sign-in link works once, ever, whichever API process it reaches.

The key `user.registered` carries is the account's first key, named "default"; its id, like
every key's, is the start of its hash, so it needs no event of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum

from . import subjects
from .envelope import Event, Payload, utcnow
from .users import UserRegistered, hash_api_key

MAX_KEYS_PER_ACCOUNT = 20
MAX_KEY_NAME_CHARS = 100
DEFAULT_KEY_NAME = "default"


class SignInMethod(StrEnum):
    magic_link = "magic_link"
    github = "github"
    google = "google"
    oidc = "oidc"


class AccountRefused(Exception):
    """A change the account cannot take (too many keys, a bad name)."""


class KeyNotFound(LookupError):
    pass


def key_id_for(key_hash: str) -> str:
    return key_hash[:16]


# --- events ----------------------------------------------------------------------------

class KeyCreatedData(Payload, frozen=True, kw_only=True):
    user_id: str
    key_id: str
    key_hash: str
    key_prefix: str
    name: str


class KeyCreated(Event, tag="user.key_created", frozen=True, kw_only=True):
    data: KeyCreatedData


class KeyRevokedData(Payload, frozen=True, kw_only=True):
    user_id: str
    key_id: str


class KeyRevoked(Event, tag="user.key_revoked", frozen=True, kw_only=True):
    data: KeyRevokedData


class SignedInData(Payload, frozen=True, kw_only=True):
    user_id: str
    email: str
    method: SignInMethod
    link_id: str | None = None


class SignedIn(Event, tag="user.signed_in", frozen=True, kw_only=True):
    data: SignedInData


class SessionsRevokedData(Payload, frozen=True, kw_only=True):
    user_id: str


class SessionsRevoked(Event, tag="user.sessions_revoked", frozen=True, kw_only=True):
    data: SessionsRevokedData


class LinkUsedData(Payload, frozen=True, kw_only=True):
    user_id: str
    link_id: str
    email: str


class LinkUsed(Event, tag="user.link_used", frozen=True, kw_only=True):
    data: LinkUsedData


ACCOUNT_EVENT_TYPES: tuple[type[Event], ...] = (KeyCreated, KeyRevoked, SignedIn, SessionsRevoked, LinkUsed)


# --- subjects -----------------------------------------------------------------------------

def key_created_subject(user_id: str) -> str:
    return subjects.user("key_created", user_id)


def key_revoked_subject(user_id: str) -> str:
    return subjects.user("key_revoked", user_id)


def account_events(user_id: str) -> str:
    """Every three-token event of one user (not the link records): what a key change expects
    its last sequence on, so two concurrent changes cannot both decide on the same keys."""
    return f"user.*.{subjects.token(user_id)}"


def signed_in_subject(user_id: str) -> str:
    return subjects.user("signed_in", user_id)


def sessions_revoked_subject(user_id: str) -> str:
    return subjects.user("sessions_revoked", user_id)


def link_used_subject(user_id: str, link_id: str) -> str:
    return f"{subjects.user('link_used', user_id)}.{subjects.token(link_id)}"


# --- the keys of an account -----------------------------------------------------------------

@dataclass(frozen=True)
class Key:
    key_id: str
    name: str
    prefix: str
    key_hash: str
    revoked: bool = False


@dataclass(frozen=True)
class KeyRing:
    user_id: str
    keys: dict[str, Key] = field(default_factory=dict)

    def active(self) -> list[Key]:
        return [k for k in self.keys.values() if not k.revoked]


def evolve(ring: KeyRing, event: Event) -> KeyRing:
    if isinstance(event, UserRegistered):
        d = event.data
        key = Key(key_id_for(d.key_hash), DEFAULT_KEY_NAME, d.key_prefix, d.key_hash)
        return replace(ring, keys={key.key_id: key, **ring.keys})
    if isinstance(event, KeyCreated):
        d = event.data
        return replace(ring, keys={**ring.keys, d.key_id: Key(d.key_id, d.name, d.key_prefix, d.key_hash)})
    if isinstance(event, KeyRevoked) and (old := ring.keys.get(event.data.key_id)) is not None:
        return replace(ring, keys={**ring.keys, old.key_id: replace(old, revoked=True)})
    return ring


def decide_create_key(ring: KeyRing, name: str, api_key: str) -> KeyCreated:
    name = name.strip()
    if not name or len(name) > MAX_KEY_NAME_CHARS:
        raise AccountRefused(f"a key's name is 1 to {MAX_KEY_NAME_CHARS} characters")
    if len(ring.active()) >= MAX_KEYS_PER_ACCOUNT:
        raise AccountRefused(f"an account holds at most {MAX_KEYS_PER_ACCOUNT} active keys: revoke one first")
    key_hash = hash_api_key(api_key)
    return KeyCreated(aggregate_id=ring.user_id, occurred_at=utcnow(),
                      data=KeyCreatedData(user_id=ring.user_id, key_id=key_id_for(key_hash), key_hash=key_hash,
                                          key_prefix=api_key[:8], name=name))


def decide_revoke_key(ring: KeyRing, key_id: str) -> KeyRevoked | None:
    """None when the key is revoked already (revoking is idempotent). KeyNotFound when the
    account has no such key: another account's key is not found either."""
    key = ring.keys.get(key_id)
    if key is None:
        raise KeyNotFound(f"key {key_id} not found")
    if key.revoked:
        return None
    return KeyRevoked(aggregate_id=ring.user_id, data=KeyRevokedData(user_id=ring.user_id, key_id=key_id))


def signed_in(user_id: str, email: str, method: SignInMethod, link_id: str | None = None) -> SignedIn:
    return SignedIn(aggregate_id=user_id, data=SignedInData(user_id=user_id, email=email, method=method,
                                                            link_id=link_id))


def sessions_revoked(user_id: str) -> SessionsRevoked:
    return SessionsRevoked(aggregate_id=user_id, data=SessionsRevokedData(user_id=user_id))


def link_used(user_id: str, link_id: str, email: str) -> LinkUsed:
    return LinkUsed(aggregate_id=user_id, data=LinkUsedData(user_id=user_id, link_id=link_id, email=email))
