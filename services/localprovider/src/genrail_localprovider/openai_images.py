"""OpenAI's `POST /v1/images/edits`, answered locally with real, deterministic Pillow edits.

Speaks OpenAI's wire format: multipart with `image` (or `image[]`, repeatable, up to 16,
PNG/JPEG/WebP by part content type), `prompt`, `model` (must be `gpt-image-1`: the emulator
is strict so clients that forget to pin it fail here, not in production), optional `n`,
`size`, `quality`, `output_format`, `output_compression`, `background`, `input_fidelity`,
`mask`, `user`; `Authorization: Bearer <key>` with any non-empty key. The answer is
`{"created", "data": [{"b64_json"}], "output_format", "usage"}`; errors are
`{"error": {"message", "type", "param", "code"}}`.

The first image is the one edited, as `genrail_localprovider.work.image_edits` reads the
prompt; further images are decoded (so bad ones are refused) but, unlike the real model,
not blended in. The `n` images are identical, and an explicit `size` crops-to-fill the
result to that size, as the real API always answers at the requested size. `mask` and
`background` are accepted and validated but do not change the result. Usage is an estimate.

Test knobs, so tests can provoke failures deterministically (markers are removed from the
prompt before it is read as an edit):
  `[bad]`        -> 400 invalid_request_error.
  `[fail]`       -> 500 server_error, every time.
  `[rate-limit]` -> 429 with `retry-after-ms: 50` and `retry-after: 1`, only on the first
                    request for a given prompt and images (remembered per process, for the
                    last 10,000 such requests); the next identical request succeeds.
  An image carrying the PNG text chunk `genrail-test: reject` -> 400, as the real API
  refuses an image its safety system rejects (so one image of a batch can fail alone).
"""

from __future__ import annotations

import base64
import hashlib
import io
import math
import time
import uuid
from collections import OrderedDict
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from PIL import Image, ImageOps
from starlette.datastructures import FormData, UploadFile

from genrail_localprovider.work.image_edits import (
    EditOp,
    InvalidInputImage,
    UnsupportedPrompt,
    edit_image,
    encode_image,
    open_image,
    parse_edit_prompt,
)

router = APIRouter()

MODEL = "gpt-image-1"
MAX_IMAGES = 16
MAX_IMAGE_BYTES = 50 * 1024 * 1024
IMAGE_CONTENT_TYPES = ("image/jpeg", "image/png", "image/webp")
SIZES = {"auto": None, "1024x1024": (1024, 1024), "1536x1024": (1536, 1024), "1024x1536": (1024, 1536)}
CHOICES = {
    "quality": ("low", "medium", "high", "auto"),
    "output_format": ("png", "jpeg", "webp"),
    "background": ("transparent", "opaque", "auto"),
    "input_fidelity": ("high", "low"),
}
KNOWN_FIELDS = {"image", "image[]", "prompt", "model", "n", "size", "output_compression", "mask", "user",
                *CHOICES}

FAIL_KNOB, RATE_LIMIT_KNOB, BAD_KNOB = "[fail]", "[rate-limit]", "[bad]"
_RATE_LIMITED_ONCE: OrderedDict[str, None] = OrderedDict()
_RATE_LIMIT_MEMORY = 10_000

# gpt-image-1 output tokens for a 1024x1024 image, by quality; other sizes scale by area.
_OUTPUT_TOKENS_1024_SQUARE = {"low": 272, "medium": 1056, "high": 4160}


class _OpenAIError(Exception):
    def __init__(self, status: int, message: str, *, type_: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        body = {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}
        return JSONResponse(body, status_code=self.status, headers={**self.headers, **_request_id()})


def _request_id() -> dict[str, str]:
    return {"x-request-id": f"req_{uuid.uuid4().hex}"}


@router.post("/v1/images/edits")
async def create_image_edit(request: Request) -> JSONResponse:
    try:
        _authorize(request)
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            raise _OpenAIError(400, "This endpoint expects a multipart/form-data body.")
        try:
            async with request.form(max_files=MAX_IMAGES + 1, max_fields=64) as form:
                return await _edit(form)
        except HTTPException as exc:  # Starlette's multipart parser refusing the body
            raise _OpenAIError(400, f"Could not parse the multipart body: {exc.detail}") from exc
    except _OpenAIError as error:
        return error.response()


def _authorize(request: Request) -> None:
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise _OpenAIError(401, "You didn't provide an API key. You need to provide your API key in an "
                                "Authorization header using Bearer auth "
                                "(i.e. Authorization: Bearer YOUR_KEY).", code="invalid_api_key")


async def _edit(form: FormData) -> JSONResponse:
    if unknown := sorted(set(form.keys()) - KNOWN_FIELDS):
        raise _OpenAIError(400, f"Unknown parameter: '{unknown[0]}'.", param=unknown[0],
                           code="unknown_parameter")
    model = _text(form, "model")
    if model != MODEL:
        shown = "(missing)" if model is None else f"'{model}'"
        raise _OpenAIError(400, f"Invalid value: {shown}. This emulator supports only '{MODEL}'; pass it "
                                "explicitly.", param="model", code="invalid_value")
    prompt = _text(form, "prompt")
    if not prompt:
        raise _OpenAIError(400, "Missing required parameter: 'prompt'.", param="prompt",
                           code="missing_required_parameter")
    images = await _images(form)
    n = _int_in_range(form, "n", 1, 10, default=1)
    _int_in_range(form, "output_compression", 0, 100, default=100)
    size_name = _text(form, "size") or "auto"
    if size_name not in SIZES:
        raise _OpenAIError(400, f"Invalid value: '{size_name}'. Supported values are: "
                                f"{', '.join(repr(s) for s in SIZES)}.", param="size", code="invalid_value")
    choices = {name: _choice(form, name) for name in CHOICES}
    output_format = choices["output_format"] or "png"
    if choices["background"] == "transparent" and output_format == "jpeg":
        raise _OpenAIError(400, "A transparent background needs output_format png or webp.",
                           param="background", code="invalid_value")

    _apply_test_knobs(prompt, images)
    instructions = " ".join(prompt.replace(BAD_KNOB, " ").replace(FAIL_KNOB, " ")
                            .replace(RATE_LIMIT_KNOB, " ").split())
    try:
        ops = parse_edit_prompt(instructions)
        edited, out_size, in_sizes = await run_in_threadpool(_render, images, ops, SIZES[size_name],
                                                             output_format)
    except UnsupportedPrompt as exc:
        raise _OpenAIError(400, str(exc), param="prompt", code="unsupported_prompt") from exc
    except InvalidInputImage as exc:
        raise _OpenAIError(400, f"Invalid image file: {exc}", param="image", code="invalid_image") from exc

    encoded = base64.b64encode(edited).decode("ascii")
    body = {
        "created": int(time.time()),
        "data": [{"b64_json": encoded} for _ in range(n)],
        "output_format": output_format,
        "usage": _usage(instructions, in_sizes, out_size, n, choices["quality"] or "auto"),
    }
    return JSONResponse(body, headers=_request_id())


def _text(form: FormData, name: str) -> str | None:
    value = form.get(name)
    if isinstance(value, UploadFile):
        raise _OpenAIError(400, f"Invalid type for '{name}': expected a string, got a file.", param=name,
                           code="invalid_type")
    return value


def _int_in_range(form: FormData, name: str, low: int, high: int, *, default: int) -> int:
    raw = _text(form, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _OpenAIError(400, f"Invalid type for '{name}': expected an integer, got '{raw}'.", param=name,
                           code="invalid_type") from None
    if not low <= value <= high:
        raise _OpenAIError(400, f"Invalid '{name}': {value} is not between {low} and {high}.", param=name,
                           code="invalid_value")
    return value


def _choice(form: FormData, name: str) -> str | None:
    value = _text(form, name)
    if value is not None and value not in CHOICES[name]:
        allowed = ", ".join(f"'{choice}'" for choice in CHOICES[name])
        raise _OpenAIError(400, f"Invalid value: '{value}'. Supported values are: {allowed}.", param=name,
                           code="invalid_value")
    return value


async def _images(form: FormData) -> list[bytes]:
    uploads = form.getlist("image") + form.getlist("image[]")
    if not uploads:
        raise _OpenAIError(400, "Missing required parameter: 'image'.", param="image",
                           code="missing_required_parameter")
    if len(uploads) > MAX_IMAGES:
        raise _OpenAIError(400, f"At most {MAX_IMAGES} images can be edited at once, got {len(uploads)}.",
                           param="image", code="invalid_value")
    images = []
    for upload in uploads:
        if not isinstance(upload, UploadFile):
            raise _OpenAIError(400, "Invalid type for 'image': expected a file, got a string.", param="image",
                               code="invalid_type")
        mimetype = (upload.content_type or "application/octet-stream").split(";")[0].strip().lower()
        if mimetype not in IMAGE_CONTENT_TYPES:
            raise _OpenAIError(400, f"Invalid file 'image': unsupported mimetype ('{mimetype}'). Supported "
                                    "file formats are 'image/jpeg', 'image/png', and 'image/webp'.",
                               param="image", code="unsupported_file_mimetype")
        if upload.size is not None and upload.size > MAX_IMAGE_BYTES:
            raise _OpenAIError(400, f"Invalid file 'image': larger than {MAX_IMAGE_BYTES // 2**20} MB.",
                               param="image", code="invalid_value")
        images.append(await upload.read())
    return images


def _rejected_by_marker(image: bytes) -> bool:
    try:
        with Image.open(io.BytesIO(image)) as opened:
            return opened.info.get("genrail-test") == "reject"
    except OSError:
        return False


def _apply_test_knobs(prompt: str, images: list[bytes]) -> None:
    if any(_rejected_by_marker(image) for image in images):
        raise _OpenAIError(400, "Your request was rejected as a result of our safety system.", param="image",
                           code="moderation_blocked")
    if BAD_KNOB in prompt:
        raise _OpenAIError(400, "Invalid request (the prompt asked for [bad]).", param="prompt",
                           code="invalid_value")
    if FAIL_KNOB in prompt:
        raise _OpenAIError(500, "The server had an error while processing your request. Sorry about that!",
                           type_="server_error")
    if RATE_LIMIT_KNOB in prompt:
        digest = hashlib.sha256(prompt.encode())
        for image in images:
            digest.update(len(image).to_bytes(8, "big") + hashlib.sha256(image).digest())
        key = digest.hexdigest()
        if key not in _RATE_LIMITED_ONCE:
            _RATE_LIMITED_ONCE[key] = None
            if len(_RATE_LIMITED_ONCE) > _RATE_LIMIT_MEMORY:
                _RATE_LIMITED_ONCE.popitem(last=False)
            raise _OpenAIError(
                429, f"Rate limit reached for {MODEL} on images per minute. Please try again in 50ms.",
                type_="requests", code="rate_limit_exceeded",
                headers={"retry-after-ms": "50", "retry-after": "1", "x-ratelimit-remaining-requests": "0",
                         "x-ratelimit-reset-requests": "50ms"})


def _render(images: list[bytes], ops: list[EditOp], size: tuple[int, int] | None,
            output_format: str) -> tuple[bytes, tuple[int, int], list[tuple[int, int]]]:
    decoded = [open_image(data) for data in images]
    edited = edit_image(decoded[0], ops)
    if size is not None:
        edited = ImageOps.fit(edited, size, Image.Resampling.LANCZOS)
    return encode_image(edited, output_format), edited.size, [image.size for image in decoded]


def _usage(prompt: str, in_sizes: list[tuple[int, int]], out_size: tuple[int, int], n: int,
           quality: str) -> dict[str, Any]:
    text_tokens = max(1, math.ceil(len(prompt) / 4))
    # Vision-style accounting: a base cost plus one per 512 px tile.
    image_tokens = sum(85 + 170 * math.ceil(w / 512) * math.ceil(h / 512) for w, h in in_sizes)
    per_image = _OUTPUT_TOKENS_1024_SQUARE.get(quality, _OUTPUT_TOKENS_1024_SQUARE["medium"])
    output_tokens = n * max(1, round(per_image * out_size[0] * out_size[1] / (1024 * 1024)))
    return {
        "input_tokens": text_tokens + image_tokens,
        "input_tokens_details": {"text_tokens": text_tokens, "image_tokens": image_tokens},
        "output_tokens": output_tokens,
        "total_tokens": text_tokens + image_tokens + output_tokens,
    }
