"""Image checks off the event loop: `validate_image` on `workers` threads, with at most
`queue` checks waiting. Decoding a large image takes hundreds of milliseconds of CPU and
memory (a 6,320 × 6,320 PNG of 155 KB: 0.5 s and 160 MB), which on the loop would stall
every other request. Past the queue, `check` answers None: the caller says "busy"."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools

from .image_validation import ImageInfo, validate_image


class ImageChecks:
    def __init__(self, workers: int = 2, queue: int = 8):
        self._pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="image-check")
        self._capacity, self._in_hand = workers + queue, 0

    async def check(self, data: bytes, *, max_bytes: int, max_pixels: int) -> ImageInfo | None:
        if self._in_hand >= self._capacity:
            return None
        self._in_hand += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._pool, functools.partial(validate_image, data, max_bytes=max_bytes, max_pixels=max_pixels))
        finally:
            self._in_hand -= 1

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
