from __future__ import annotations

import hashlib
import uuid

from fastapi import APIRouter, UploadFile

from ..deps import CurrentUser, SettingsDep, StorageDep
from ..errors import Busy, Conflict, PayloadTooLarge, Unprocessable
from ..image_checks import ImageChecks
from ..image_validation import ImageInfo, InvalidImage

# One per process: images are decoded on its threads, never on the event loop.
IMAGE_CHECKS = ImageChecks()
from ..schemas import ERRORS, PresignedUpload, PresignRequest, UploadPublic

router = APIRouter(prefix="/uploads", tags=["uploads"])
EXTENSIONS = {"image/jpeg": ".jpg", "image/png": ".png", "image/webp": ".webp"}
PRESIGN_TTL_S = 900


def upload_prefix(user_id: str) -> str:
    return f"uploads/{user_id}/"


async def checked_image(data: bytes, settings, *, about: str = "") -> ImageInfo:
    """The image's format and size, checked off the event loop (see `ImageChecks`):
    Unprocessable (prefixed with `about`) when it is not an acceptable image, Busy when too
    many checks are in hand."""
    try:
        info = await IMAGE_CHECKS.check(data, max_bytes=settings.upload_max_bytes, max_pixels=settings.upload_max_pixels)
    except InvalidImage as exc:
        raise Unprocessable(f"{about}{exc.message}") from None
    if info is None:
        raise Busy("too many images are being checked right now: try again in a second")
    return info


@router.post("", status_code=201, response_model=UploadPublic,
             responses={401: ERRORS[401], 413: ERRORS[413], 422: ERRORS[422], 503: ERRORS[503]},
             summary="Upload an image (JPEG, PNG or WebP, checked by its content) for a batch")
async def upload(file: UploadFile, user_id: CurrentUser, storage: StorageDep, settings: SettingsDep) -> UploadPublic:
    data = await file.read(settings.upload_max_bytes + 1)
    if len(data) > settings.upload_max_bytes:
        raise PayloadTooLarge(f"image is larger than {settings.upload_max_bytes} bytes")
    info = await checked_image(data, settings)
    key = f"{upload_prefix(user_id)}{hashlib.sha256(data).hexdigest()[:40]}{EXTENSIONS[info.content_type]}"
    await storage.put(key, data, info.content_type)
    return UploadPublic(key=key, content_type=info.content_type, width=info.width, height=info.height,
                        size_bytes=info.size_bytes)


DIRECT_PREFIX = "direct-"  # keys handed out by /presign: their content never passed through the API


async def check_direct_upload(storage, key: str, settings) -> None:
    """An image PUT straight into storage is checked as an upload through the API is, before
    a batch may take it: its size from the storage (read without the content), then its
    type by content and its pixels, off the event loop. Unprocessable, PayloadTooLarge or
    Busy says what is wrong; nothing is fetched past the size limit."""
    size = await storage.size(key)
    if size is None:
        raise Unprocessable(f"image_keys: {key!r} is not one of your uploads")
    if size > settings.upload_max_bytes:
        raise PayloadTooLarge(f"image_keys: {key!r} is {size} bytes, larger than {settings.upload_max_bytes}")
    await checked_image(await storage.get(key), settings, about=f"image_keys: {key!r}: ")


@router.post("/presign", response_model=PresignedUpload,
             responses={401: ERRORS[401], 409: ERRORS[409], 413: ERRORS[413], 422: ERRORS[422]},
             summary="A form to POST an image of the declared size straight into object storage (S3 storage only)")
async def presign(body: PresignRequest, user_id: CurrentUser, storage: StorageDep,
                  settings: SettingsDep) -> PresignedUpload:
    if body.size_bytes > settings.upload_max_bytes:
        raise PayloadTooLarge(f"image is larger than {settings.upload_max_bytes} bytes")
    key = f"{upload_prefix(user_id)}{DIRECT_PREFIX}{uuid.uuid4().hex}{EXTENSIONS[body.content_type]}"
    post = await storage.presigned_post(key, PRESIGN_TTL_S, body.content_type, max_bytes=body.size_bytes)
    if post is None:
        raise Conflict("direct uploads need S3 storage; POST the file to /api/uploads instead")
    return PresignedUpload(key=key, url=post.url, fields=post.fields, expires_in_s=PRESIGN_TTL_S)
