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
