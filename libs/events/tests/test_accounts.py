"""Given an account's key events, when a key is made or revoked, then the ring and the refusals."""

from __future__ import annotations

import pytest
from genrail_events import accounts, users
from genrail_events.envelope import Event


def registered_ring() -> tuple[accounts.KeyRing, str]:
    api_key = users.new_api_key()
    registered = users.user_registered("a@example.com", api_key)
    return accounts.evolve(accounts.KeyRing(registered.aggregate_id), registered), api_key


def test_the_registration_key_is_the_default_key_whose_id_starts_its_hash() -> None:
    ring, api_key = registered_ring()
    (key,) = ring.active()
    assert key.name == "default" and key.key_id == users.hash_api_key(api_key)[:16] and key.prefix == api_key[:8]


def test_a_created_key_joins_the_ring_and_its_event_never_holds_the_key_itself() -> None:
    ring, _ = registered_ring()
    api_key = users.new_api_key()
    created = accounts.decide_create_key(ring, "  ci  ", api_key)
    assert created.data.name == "ci" and created.data.key_hash == users.hash_api_key(api_key)
    assert api_key not in created.to_bytes().decode()
    ring = accounts.evolve(ring, created)
    assert sorted(k.name for k in ring.active()) == ["ci", "default"]


@pytest.mark.parametrize("name", ["", "   ", "x" * 101])
def test_a_key_needs_a_name_of_reasonable_length(name: str) -> None:
    ring, _ = registered_ring()
    with pytest.raises(accounts.AccountRefused):
        accounts.decide_create_key(ring, name, users.new_api_key())


def test_an_account_holds_a_bounded_number_of_active_keys() -> None:
    ring, _ = registered_ring()
    for i in range(accounts.MAX_KEYS_PER_ACCOUNT - 1):
        ring = accounts.evolve(ring, accounts.decide_create_key(ring, f"k{i}", users.new_api_key()))
    with pytest.raises(accounts.AccountRefused):
        accounts.decide_create_key(ring, "one too many", users.new_api_key())
    ring = accounts.evolve(ring, accounts.decide_revoke_key(ring, ring.active()[0].key_id))
    accounts.decide_create_key(ring, "room again", users.new_api_key())


def test_revoking_is_idempotent_and_an_unknown_key_is_not_found() -> None:
    ring, _ = registered_ring()
    key_id = ring.active()[0].key_id
    revoked = accounts.decide_revoke_key(ring, key_id)
    assert revoked is not None and revoked.data.key_id == key_id
    ring = accounts.evolve(ring, revoked)
    assert ring.active() == [] and accounts.decide_revoke_key(ring, key_id) is None
    with pytest.raises(accounts.KeyNotFound):
        accounts.decide_revoke_key(ring, "0123456789abcdef")


def test_subjects_keep_the_user_last_but_a_link_record_names_its_link() -> None:
    assert accounts.key_created_subject("u1") == "user.key_created.u1"
    assert accounts.sessions_revoked_subject("u1") == "user.sessions_revoked.u1"
    assert accounts.link_used_subject("u1", "l1") == "user.link_used.u1.l1"
    with pytest.raises(ValueError):
        accounts.link_used_subject("u1", "l1.>")


def test_sign_in_events_round_trip() -> None:
    event = accounts.signed_in("u1", "a@example.com", accounts.SignInMethod.github)
    decoded = Event.from_bytes(event.to_bytes())
    assert decoded == event and decoded.data.method is accounts.SignInMethod.github and decoded.data.link_id is None
