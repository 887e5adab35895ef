from __future__ import annotations

import pytest

from genrail_events import batches
from genrail_events.batches import BatchStatus


@pytest.mark.parametrize(("counts", "total", "expected"), [
    ({"pending": 2, "completed": 1}, 3, BatchStatus.processing),
    ({"processing": 1, "failed": 2}, 3, BatchStatus.processing),
    ({"completed": 3}, 3, BatchStatus.completed),
    ({"completed": 2, "failed": 1}, 3, BatchStatus.completed_with_errors),
    ({"completed": 1, "canceled": 1, "expired": 1}, 3, BatchStatus.completed_with_errors),
    ({"failed": 2, "canceled": 1}, 3, BatchStatus.failed),
])
def test_a_batch_is_done_when_every_image_is_final(counts, total, expected) -> None:
    assert batches.status(counts, total) is expected


def test_the_same_key_names_the_same_batch_and_its_images_have_stable_job_ids() -> None:
    batch_id = batches.batch_id_for("u1", "spring-sale")
    assert batch_id == batches.batch_id_for("u1", "spring-sale") != batches.batch_id_for("u2", "spring-sale")
    event = batches.batch_created(batch_id, "u1", "make it sepia", ["a.png", "b.png"], 1)
    assert event.data.job_ids == [batches.image_job_id(batch_id, 0), batches.image_job_id(batch_id, 1)]
    assert len(set(event.data.job_ids)) == 2
