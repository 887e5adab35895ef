"""OpenAI image edits (`POST /v1/images/edits`) over httpx.

Wire format, as the official SDK sends it: multipart with one `image` part for a single
image or one `image[]` part per image for several, plus `prompt`, `model` and the optional
`size`, `quality`, `n`, `output_format`, `background`. The answer is
`{"created", "data": [{"b64_json"}], "usage"}`; errors are
`{"error": {"message", "type", "param", "code"}}`.

By default the client makes one attempt and raises ProviderError: transient for timeouts,
connection trouble, 408, 409, 429 and 5xx (with the wait the provider asked for, from
`retry-after-ms` then `retry-after`), permanent for other 4xx. The pipeline's queue does the
retrying with that delay; `max_attempts` is there for callers without a queue.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import random
from collections.abc import Sequence
from typing import Any

import httpx

from genrail_pipeline.clients.errors import ProviderError, retry_after_seconds

ImageUpload = tuple[str, bytes, str]  # (filename, content, content type)

DEFAULT_MODEL = "gpt-image-1"
MAX_IMAGES = 16
# Edits can take up to two minutes; uploads of several large images take a while to write.
DEFAULT_TIMEOUT = httpx.Timeout(connect=10.0, read=180.0, write=60.0, pool=30.0)
# Statuses the official SDKs retry: request timeout, lock conflict, rate limit, server errors.
_TRANSIENT_STATUSES = frozenset({408, 409, 429})


class OpenAIImagesClient:
    def __init__(self, base_url: str, api_key: str, http: httpx.AsyncClient, model: str = DEFAULT_MODEL,
                 *, timeout: httpx.Timeout = DEFAULT_TIMEOUT) -> None:
        """base_url includes the API version, as the SDK's does: `https://api.openai.com/v1`."""
        self._edits_url = base_url.rstrip("/") + "/images/edits"
        self._api_key = api_key
        self._http = http
        self._model = model
        self._timeout = timeout

    async def edit(self, images: Sequence[ImageUpload], prompt: str, *, size: str | None = None,
                   quality: str | None = None, n: int = 1, output_format: str | None = None,
                   background: str | None = None, max_attempts: int = 1,
                   max_retry_wait_s: float = 60.0) -> list[bytes]:
        """The edited images' bytes, one per `n`.

        With max_attempts > 1, transient failures are retried in the call, waiting what the
        provider asked for (or a short exponential backoff when it did not say); a requested
        wait longer than max_retry_wait_s is not slept through but raised to the caller.
        """
        if not 1 <= len(images) <= MAX_IMAGES:
            raise ValueError(f"images/edits takes 1 to {MAX_IMAGES} images, got {len(images)}")
        if not prompt.strip():
            raise ValueError("images/edits needs a non-empty prompt")
        if not 1 <= n <= 10:
            raise ValueError(f"n must be between 1 and 10, got {n}")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")

        fields = {"model": self._model, "prompt": prompt, "n": str(n)}
        optional = {"size": size, "quality": quality, "output_format": output_format,
                    "background": background}
        fields |= {name: value for name, value in optional.items() if value is not None}
        image_field = "image" if len(images) == 1 else "image[]"
        files = [(image_field, upload) for upload in images]

        for attempt in range(1, max_attempts + 1):
            try:
                return await self._post_once(fields, files)
            except ProviderError as error:
                if not error.transient or attempt == max_attempts:
                    raise
                wait = error.retry_after_s if error.retry_after_s is not None else _backoff(attempt)
                if wait > max_retry_wait_s:
                    raise
                await asyncio.sleep(wait)
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _post_once(self, fields: dict[str, str], files: list[tuple[str, ImageUpload]]) -> list[bytes]:
        try:
            response = await self._http.post(
                self._edits_url, data=fields, files=files, timeout=self._timeout,
                headers={"Authorization": f"Bearer {self._api_key}"})
        except httpx.UnsupportedProtocol as exc:  # a misconfigured base URL will not heal by retrying
            raise ProviderError(f"OpenAI images/edits: bad base URL: {exc}", transient=False) from exc
        except httpx.TimeoutException as exc:
            raise ProviderError(f"OpenAI images/edits timed out: {exc!r}", transient=True) from exc
        except httpx.TransportError as exc:
            raise ProviderError(f"OpenAI images/edits connection failed: {exc!r}", transient=True) from exc

        if response.is_success:
            return _decode_images(response)
        raise _error_from(response)


def _backoff(attempt: int) -> float:
    """The SDK's fallback schedule: 0.5 s doubling to 8 s, less up to 25% jitter."""
    return min(0.5 * 2 ** (attempt - 1), 8.0) * (1 - 0.25 * random.random())


def _error_from(response: httpx.Response) -> ProviderError:
    status = response.status_code
    transient = status in _TRANSIENT_STATUSES or status >= 500
    should_retry = response.headers.get("x-should-retry")  # OpenAI's explicit override
    if should_retry in ("true", "false"):
        transient = should_retry == "true"

    details = _openai_error(response)
    message = details.get("message") or response.text[:500] or response.reason_phrase
    extras = [f"{key}={details[key]}" for key in ("type", "code", "param") if details.get(key)]
    if request_id := response.headers.get("x-request-id"):
        extras.append(f"request_id={request_id}")
    suffix = f" ({', '.join(extras)})" if extras else ""
    return ProviderError(f"OpenAI images/edits {status}: {message}{suffix}", transient=transient,
                         retry_after_s=retry_after_seconds(response.headers) if transient else None,
                         status_code=status)


def _openai_error(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


def _decode_images(response: httpx.Response) -> list[bytes]:
    def malformed(why: str) -> ProviderError:
        return ProviderError(f"OpenAI images/edits {response.status_code}: unusable answer: {why}",
                             transient=False, status_code=response.status_code)

    try:
        body = response.json()
    except ValueError:
        raise malformed(f"not JSON (content-type {response.headers.get('content-type')!r})") from None
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list) or not data:
        raise malformed("no data[]")
    images = []
    for index, item in enumerate(data):
        encoded = item.get("b64_json") if isinstance(item, dict) else None
        if not isinstance(encoded, str):
            raise malformed(f"data[{index}] has no b64_json")
        try:
            images.append(base64.b64decode(encoded, validate=True))
        except binascii.Error:
            raise malformed(f"data[{index}].b64_json is not base64") from None
    return images
