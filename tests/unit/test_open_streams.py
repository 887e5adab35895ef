"""Per-user caps on long responses: a claim past the cap is refused, and a claim is given
back however the response ends (read to the end, failed, or dropped by the client)."""

from __future__ import annotations

import pytest

from genrail_api.open_streams import OpenStreams


async def parts(n: int, fail_at: int | None = None):
    for i in range(n):
        if i == fail_at:
            raise RuntimeError("storage went away")
        yield i


def test_claims_past_the_cap_are_refused_and_other_users_are_not_affected() -> None:
    streams = OpenStreams()
    assert streams.claim("u", 2) and streams.claim("u", 2) and not streams.claim("u", 2)
    assert streams.claim("other", 2)
    streams.release("u")
    assert streams.claim("u", 2)


async def test_a_claim_is_given_back_when_the_body_ends_fails_or_is_dropped() -> None:
    streams = OpenStreams()
    assert streams.claim("u", 1)
    assert [p async for p in streams.held("u", parts(3))] == [0, 1, 2]
    assert streams.claim("u", 1)
    with pytest.raises(RuntimeError):
        _ = [p async for p in streams.held("u", parts(3, fail_at=1))]
    assert streams.claim("u", 1)
    dropped = streams.held("u", parts(3))
    await anext(dropped)
    await dropped.aclose()  # what the server does when the client goes away
    assert streams.claim("u", 1)
