"""API keys are remembered for a short while, and for no more keys than the bound."""

from __future__ import annotations

from genrail_api.key_cache import KeyCache


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_key_is_remembered_until_its_time_to_live_runs_out() -> None:
    clock = Clock()
    cache = KeyCache(ttl_s=30, clock=clock)
    cache.put("h1", "u1")
    clock.now = 29.9
    assert cache.get("h1") == "u1"
    clock.now = 30.0
    assert cache.get("h1") is None  # a key revoked meanwhile stops working within the TTL


def test_the_least_recently_stored_keys_go_first_beyond_the_bound() -> None:
    cache = KeyCache(max_keys=2)
    for n in range(3):
        cache.put(f"h{n}", f"u{n}")
    assert (cache.get("h0"), cache.get("h1"), cache.get("h2")) == (None, "u1", "u2")
