from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from genrail_storage.media_urls import MediaTokenExpired, MediaTokenInvalid, verify_media_token
from genrail_storage.store import ObjectNotFound

from ..deps import SettingsDep, StorageDep
from ..errors import ApiError, NotFound
from ..media import content_type_for
from ..schemas import ERRORS

router = APIRouter(prefix="/media", tags=["media"])


class Gone(ApiError):
    status_code = 410


@router.get("/{token}", summary="Download a job's output through the expiring URL its job gave you",
            response_class=StreamingResponse,
            responses={200: {"description": "The file", "content": {"application/octet-stream": {}}},
                       404: ERRORS[404], 410: {"model": ERRORS[404]["model"], "description": "The URL has expired"}})
async def download(token: str, storage: StorageDep, settings: SettingsDep) -> StreamingResponse:
    try:
        key = verify_media_token(token, settings.media_url_secret.get_secret_value())
    except MediaTokenExpired:
        raise Gone("this media URL has expired: fetch the job again for a fresh one") from None
    except MediaTokenInvalid:
        raise NotFound("no media at this URL") from None
    if not await storage.exists(key):
        raise NotFound("no media at this URL")
    try:
        chunks = storage.iter(key)
        first = await anext(chunks)
    except (ObjectNotFound, StopAsyncIteration):
        raise NotFound("no media at this URL") from None

    async def body():
        yield first
        async for chunk in chunks:
            yield chunk

    return StreamingResponse(body(), media_type=content_type_for(key),
                             headers={"Cache-Control": "private, max-age=300"})
