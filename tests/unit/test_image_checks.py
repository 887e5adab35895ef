"""Images are checked on threads, never on the event loop, and a full queue answers "busy"."""

from __future__ import annotations

import asyncio
import io
import time

from PIL import Image

from genrail_api.image_checks import ImageChecks


def png(side: int) -> bytes:
    out = io.BytesIO()
    Image.new("L", (side, side)).save(out, "PNG", optimize=True)
    return out.getvalue()


async def test_decoding_a_large_image_does_not_stall_the_event_loop() -> None:
    checks, big = ImageChecks(workers=1, queue=0), png(5000)
    ticks: list[float] = []

    async def tick() -> None:
        while True:
            ticks.append(time.perf_counter())
            await asyncio.sleep(0.01)

    ticker = asyncio.create_task(tick())
    info = await checks.check(big, max_bytes=10_000_000, max_pixels=40_000_000)
    ticker.cancel()
    assert info is not None and (info.width, info.height) == (5000, 5000)
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    assert len(ticks) > 3 and max(gaps) < 0.2  # the loop kept turning while the image was decoded


async def test_past_its_queue_a_check_is_refused_at_once_not_queued() -> None:
    checks, big = ImageChecks(workers=1, queue=1), png(4000)
    results = await asyncio.gather(*(checks.check(big, max_bytes=10_000_000, max_pixels=40_000_000)
                                     for _ in range(4)))
    assert sum(r is None for r in results) == 2 and sum(r is not None for r in results) == 2
