"""Job outputs as users see them: every stored file gets a URL that expires. S3 storage
presigns its own; file storage gets a URL to this API signed with the media secret."""

from __future__ import annotations

import mimetypes
import time
from typing import Any

from genrail_storage.media_urls import sign_media_token
from genrail_storage.store import Storage

from .settings import ApiSettings


async def media_url(key: str, storage: Storage, settings: ApiSettings) -> str:
    presigned = await storage.presigned_get_url(key, settings.media_url_ttl_s)
    if presigned is not None:
        return presigned
    token = sign_media_token(key, int(time.time()) + settings.media_url_ttl_s, settings.media_url_secret.get_secret_value())
    return f"{settings.public_url.rstrip('/')}/v1/media/{token}"


async def present_job(job: dict[str, Any], storage: Storage, settings: ApiSettings) -> dict[str, Any]:
    output = job.get("output")
    if not output or not isinstance(output.get("files"), list):
        return job
    files = [{**f, "url": await media_url(f["key"], storage, settings)} for f in output["files"]]
    return {**job, "output": {**output, "files": files}}


def content_type_for(key: str) -> str:
    return mimetypes.guess_type(key)[0] or "application/octet-stream"
