"""An image PUT straight into storage (a presigned upload) is checked before a batch takes
it: a declared size is not trusted, the size is read from the storage and the content is
checked as an upload through the API is."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from genrail_api.errors import PayloadTooLarge, Unprocessable
from genrail_api.routes.uploads import check_direct_upload
from genrail_api.settings import ApiSettings
from genrail_storage.store import FileStorage

KEY = "uploads/u1/direct-0123.png"


def png(side: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (side, side), (200, 30, 30)).save(out, "PNG")
    return out.getvalue()


class CountingStorage(FileStorage):
    gets = 0

    async def get(self, key: str) -> bytes:
        self.gets += 1
        return await super().get(key)


@pytest.fixture
def storage(tmp_path) -> CountingStorage:
    return CountingStorage(tmp_path)


SETTINGS = ApiSettings(upload_max_bytes=200_000, upload_max_pixels=1_000_000)


async def test_a_real_image_passes(storage) -> None:
    await storage.put(KEY, png(64), "image/png")
    await check_direct_upload(storage, KEY, SETTINGS)


async def test_an_object_larger_than_the_limit_is_refused_without_being_read(storage) -> None:
    await storage.put(KEY, b"\x89PNG\r\n\x1a\n" + b"\0" * 300_000, "image/png")
    with pytest.raises(PayloadTooLarge):
        await check_direct_upload(storage, KEY, SETTINGS)
    assert storage.gets == 0


@pytest.mark.parametrize(("content", "says"), [(b"#!/bin/sh\nrm -rf /\n", "not an image"),
                                               (png(1200), "pixels")])
async def test_content_that_is_not_an_acceptable_image_is_a_422_naming_the_key(storage, content, says) -> None:
    await storage.put(KEY, content, "image/png")
    with pytest.raises(Unprocessable) as refused:
        await check_direct_upload(storage, KEY, SETTINGS)
    assert KEY in refused.value.detail and says in refused.value.detail


async def test_a_key_with_nothing_behind_it_is_not_an_upload(storage) -> None:
    with pytest.raises(Unprocessable):
        await check_direct_upload(storage, KEY, SETTINGS)
