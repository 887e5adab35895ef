from genrail_pipeline.limits import Limiter


def test_one_user_cannot_take_more_than_their_share_and_others_still_get_slots() -> None:
    limiter = Limiter(per_user=2, per_type={"image_edit": 3})
    assert limiter.try_acquire("big", "image_edit") and limiter.try_acquire("big", "image_edit")
    assert not limiter.try_acquire("big", "image_edit")
    assert limiter.try_acquire("small", "image_edit")
    assert not limiter.try_acquire("other", "image_edit")  # the provider's cap
    assert limiter.try_acquire("other", "copy")
    limiter.release("big", "image_edit")
    assert limiter.try_acquire("other", "image_edit")


async def test_a_waiter_gets_the_slot_released_while_it_waits_and_gives_up_after_its_wait() -> None:
    import asyncio

    limiter = Limiter(per_user=1, per_type={}, max_waiting=1)
    assert limiter.try_acquire("u", "copy")
    waiter = asyncio.create_task(limiter.acquire("u", "copy", wait_s=5))
    await asyncio.sleep(0)
    assert not await limiter.acquire("u", "copy", wait_s=5)  # one waiter already: no second
    limiter.release("u", "copy")
    assert await waiter and limiter.users["u"] == 1
    assert not await limiter.acquire("u", "copy", wait_s=0.01)  # nobody releases: gives up
    assert limiter.waiting == {}
