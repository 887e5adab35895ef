"""`AsyncGenrail`, and `Genrail`, its synchronous twin.

Every call that creates something sends an `Idempotency-Key` (yours, or a fresh one), so
the client can safely send it again: a 503 or 429 is retried after its `Retry-After`, and a
connection lost mid-request is retried with the same key, up to `retries` times. Errors
raise `GenrailError` subclasses carrying the problem details."""

from __future__ import annotations

import asyncio
import json
import mimetypes
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx

from .errors import Unavailable, WaitTimeout, error_for
from .models import Account, Batch, Checkout, Credits, Delivery, Job, JobPage, Pack, Upload, WebhookEndpoint

T = TypeVar("T")
DEFAULT_BASE_URL = "http://127.0.0.1:8000"


class AsyncGenrail:
    def __init__(self, api_key: str | None = None, *, base_url: str = DEFAULT_BASE_URL, timeout_s: float = 30,
                 retries: int = 4, http: httpx.AsyncClient | None = None):
        self.api_key = api_key
        self.retries = retries
        self._http = http or httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=timeout_s)
        self._owns_http = http is None

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncGenrail:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    # --- accounts and credits --------------------------------------------------------------

    async def register(self, email: str) -> Account:
        """A new account and its API key (shown once); the client uses the key from then on."""
        account = Account(**(await self._call("POST", "/v1/users", json={"email": email}, idempotent=False)).json())
        self.api_key = account.api_key
        return account

    async def credits(self) -> Credits:
        return Credits(**(await self._call("GET", "/v1/credits")).json())

    async def packs(self) -> list[Pack]:
        return [Pack(**p) for p in (await self._call("GET", "/v1/packs")).json()]

    async def checkout(self, pack: str, *, idempotency_key: str | None = None) -> Checkout:
        body = {"pack": pack, "idempotency_key": idempotency_key or uuid.uuid4().hex}
        return Checkout(**(await self._call("POST", "/v1/billing/checkout", json=body)).json())

    # --- jobs --------------------------------------------------------------------------------

    async def generate(self, kind: str, body: dict[str, Any], *, idempotency_key: str | None = None) -> Job:
        """Any job type: `kind` is the path's last part (copy, scrape, static-ad, ugc-video, tts)."""
        answer = await self._call("POST", f"/v1/generate/{kind}", json=body, key=idempotency_key)
        return Job(**answer.json(), replayed=answer.headers.get("Idempotent-Replayed") == "true")

    async def copy(self, product_name: str, product_description: str = "", **fields: Any) -> Job:
        key = fields.pop("idempotency_key", None)
        return await self.generate("copy", {"product_name": product_name, "product_description": product_description,
                                            **fields}, idempotency_key=key)

    async def scrape(self, url: str, *, idempotency_key: str | None = None) -> Job:
        return await self.generate("scrape", {"url": url}, idempotency_key=idempotency_key)

    async def static_ad(self, headline: str, **fields: Any) -> Job:
        key = fields.pop("idempotency_key", None)
        return await self.generate("static-ad", {"headline": headline, **fields}, idempotency_key=key)

    async def ugc_video(self, script: str, **fields: Any) -> Job:
        key = fields.pop("idempotency_key", None)
        return await self.generate("ugc-video", {"script": script, **fields}, idempotency_key=key)

    async def tts(self, text: str, **fields: Any) -> Job:
        key = fields.pop("idempotency_key", None)
        return await self.generate("tts", {"text": text, **fields}, idempotency_key=key)

    async def job(self, job_id: str) -> Job:
        return Job(**(await self._call("GET", f"/v1/jobs/{job_id}")).json())

    async def list_jobs(self, *, status: str | None = None, type: str | None = None,
                        created_after: datetime | None = None, created_before: datetime | None = None,
                        cursor: str | None = None, limit: int = 50) -> JobPage:
        params = {"status": status, "type": type, "cursor": cursor, "limit": limit,
                  "created_after": created_after.isoformat() if created_after else None,
                  "created_before": created_before.isoformat() if created_before else None}
        answer = await self._call("GET", "/v1/jobs", params={k: v for k, v in params.items() if v is not None})
        return JobPage(**answer.json())

    async def iter_jobs(self, **filters: Any) -> AsyncIterator[Job]:
        """Every job matching the filters, newest first, page after page."""
        cursor = None
        while True:
            page = await self.list_jobs(cursor=cursor, **filters)
            for job in page.items:
                yield job
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def cancel(self, job_id: str) -> Job:
        return Job(**(await self._call("POST", f"/v1/jobs/{job_id}/cancel", idempotent=False)).json())

    async def wait(self, job: Job | str, *, timeout_s: float = 600, poll_s: float = 0.5) -> Job:
        """The job once it is final (completed, failed, canceled or expired), read again so its
        media URLs are fresh. Polls, slowing down to 5 s between reads; WaitTimeout after
        `timeout_s` with the job as it was last seen."""
        job_id = job if isinstance(job, str) else job.id
        deadline, delay = time.monotonic() + timeout_s, poll_s
        while True:
            current = await self.job(job_id)
            if current.done:
                return current
            if time.monotonic() + delay > deadline:
                raise WaitTimeout(current)
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 5.0)

    # --- uploads and batches ---------------------------------------------------------------

    async def upload(self, image: bytes | str | Path, *, filename: str | None = None,
                     content_type: str | None = None) -> Upload:
        """An image (bytes, or a file's path) for a batch; checked by content on the server."""
        if isinstance(image, (str, Path)):
            path = Path(image)
            data, filename = path.read_bytes(), filename or path.name
        else:
            data, filename = image, filename or "image"
        content_type = content_type or mimetypes.guess_type(filename)[0] or "application/octet-stream"
        answer = await self._call("POST", "/v1/uploads", files={"file": (filename, data, content_type)},
                                  idempotent=False)
        return Upload(**answer.json())

    async def upload_many(self, images: Iterable[bytes | str | Path], *, concurrency: int = 4) -> list[Upload]:
        """Upload several images, `concurrency` at a time, in order."""
        gate = asyncio.Semaphore(concurrency)

        async def one(image: bytes | str | Path) -> Upload:
            async with gate:
                return await self.upload(image)

        return list(await asyncio.gather(*(one(image) for image in images)))

    async def create_batch(self, prompt: str, image_keys: list[str], *,
                           idempotency_key: str | None = None) -> Batch:
        answer = await self._call("POST", "/v1/batches", json={"prompt": prompt, "image_keys": image_keys},
                                  key=idempotency_key)
        return Batch(**answer.json(), replayed=answer.headers.get("Idempotent-Replayed") == "true")

    async def batch(self, batch_id: str) -> Batch:
        return Batch(**(await self._call("GET", f"/v1/batches/{batch_id}")).json())

    async def batch_events(self, batch_id: str) -> AsyncIterator[dict[str, Any]]:
        """The batch's progress as the server sends it (Server-Sent Events), to its `done` event."""
        async with self._http.stream("GET", f"/v1/batches/{batch_id}/events", headers=self._headers(),
                                     timeout=httpx.Timeout(30, read=None)) as response:
            if response.status_code >= 400:
                await response.aread()
                raise _error(response)
            event = "message"
            async for line in response.aiter_lines():
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    yield {"event": event, "data": json.loads(line[5:].strip())}
                    if event == "done":
                        return

    async def wait_batch(self, batch: Batch | str, *, timeout_s: float = 1800) -> Batch:
        """The batch once every image is final, followed live over its event stream."""
        batch_id = batch if isinstance(batch, str) else batch.id

        async def follow() -> Batch:
            async for _ in self.batch_events(batch_id):
                pass
            return await self.batch(batch_id)

        try:
            return await asyncio.wait_for(follow(), timeout_s)
        except TimeoutError:
            raise WaitTimeout(await self.batch(batch_id)) from None

    async def download_batch(self, batch_id: str, to: str | Path | None = None) -> bytes:
        """The ZIP of the batch's edited images (written to `to` too, when given)."""
        data = (await self._call("GET", f"/v1/batches/{batch_id}/download")).content
        if to is not None:
            Path(to).write_bytes(data)
        return data

    # --- webhooks ---------------------------------------------------------------------------

    async def add_webhook_endpoint(self, url: str, *, events: list[str] | None = None, description: str = "",
                                   idempotency_key: str | None = None) -> WebhookEndpoint:
        """An endpoint hearing of every job of the account; its `secret` is only in this answer."""
        body: dict[str, Any] = {"url": url, "description": description}
        if events is not None:
            body["events"] = events
        answer = await self._call("POST", "/v1/webhooks/endpoints", json=body, key=idempotency_key)
        return WebhookEndpoint(**answer.json())

    async def webhook_endpoints(self) -> list[WebhookEndpoint]:
        return [WebhookEndpoint(**e) for e in (await self._call("GET", "/v1/webhooks/endpoints")).json()["items"]]

    async def update_webhook_endpoint(self, endpoint_id: str, **changes: Any) -> WebhookEndpoint:
        """Any of url, events, description, enabled."""
        answer = await self._call("PATCH", f"/v1/webhooks/endpoints/{endpoint_id}", json=changes)
        return WebhookEndpoint(**answer.json())

    async def rotate_webhook_secret(self, endpoint_id: str, *, overlap_s: int = 86_400) -> WebhookEndpoint:
        answer = await self._call("POST", f"/v1/webhooks/endpoints/{endpoint_id}/rotate-secret",
                                  json={"overlap_s": overlap_s}, idempotent=False)
        return WebhookEndpoint(**answer.json())

    async def delete_webhook_endpoint(self, endpoint_id: str) -> None:
        await self._call("DELETE", f"/v1/webhooks/endpoints/{endpoint_id}")

    async def webhook_deliveries(self, *, endpoint_id: str | None = None, job_id: str | None = None,
                                 status: str | None = None, limit: int = 50) -> list[Delivery]:
        params = {k: v for k, v in (("endpoint_id", endpoint_id), ("job_id", job_id), ("status", status)) if v}
        answer = await self._call("GET", "/v1/webhooks/deliveries", params={**params, "limit": limit})
        return [Delivery(**d) for d in answer.json()["items"]]

    async def resend_webhook(self, delivery_id: str) -> Delivery:
        answer = await self._call("POST", f"/v1/webhooks/deliveries/{delivery_id}/resend", idempotent=False)
        return Delivery(**answer.json())

    # --- the wire ----------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    async def _call(self, method: str, path: str, *, key: str | None = None, idempotent: bool = True,
                    **kwargs: Any) -> httpx.Response:
        """Send, retrying what is safe to send again: reads, and writes with an idempotency
        key (every creation gets one). Raises the answer's error."""
        headers = self._headers()
        if method == "POST" and idempotent:
            headers["Idempotency-Key"] = key or uuid.uuid4().hex
        safe = method == "GET" or "Idempotency-Key" in headers
        for attempt in range(self.retries + 1):
            last = attempt == self.retries or not safe
            try:
                response = await self._http.request(method, path, headers=headers, **kwargs)
            except httpx.TransportError:
                if last:
                    raise
                await asyncio.sleep(min(0.5 * 2 ** attempt, 8))
                continue
            if response.status_code in (429, 503) and not last:
                await asyncio.sleep(_retry_after(response, attempt))
                continue
            if response.status_code >= 400:
                raise _error(response)
            return response
        raise AssertionError("unreachable: the last attempt returns or raises")


def _retry_after(response: httpx.Response, attempt: int) -> float:
    try:
        return min(float(response.headers.get("Retry-After", "")), 60.0)
    except ValueError:
        return min(0.5 * 2 ** attempt, 8.0)


def _error(response: httpx.Response) -> Exception:
    try:
        problem = response.json()
    except ValueError:
        problem = {"detail": response.text[:500] or response.reason_phrase}
    if not isinstance(problem, dict):
        problem = {"detail": str(problem)[:500]}
    error = error_for(response.status_code, problem)
    return error if response.status_code not in (429, 503) else Unavailable(response.status_code, problem)


class Genrail:
    """The same client for code that is not async: each call runs on a private event loop in a
    background thread."""

    def __init__(self, api_key: str | None = None, **options: Any):
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="genrail-client", daemon=True)
        self._thread.start()
        self._client = self._run(_make(api_key, options))

    def _run(self, coroutine: Awaitable[T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()  # type: ignore[arg-type]

    @property
    def api_key(self) -> str | None:
        return self._client.api_key

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._client, name)
        if name in ("batch_events", "iter_jobs"):
            return lambda *args, **kwargs: self._run(_collect(method(*args, **kwargs)))
        return lambda *args, **kwargs: self._run(method(*args, **kwargs))

    def close(self) -> None:
        self._run(self._client.aclose())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    def __enter__(self) -> Genrail:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


async def _make(api_key: str | None, options: dict[str, Any]) -> AsyncGenrail:
    return AsyncGenrail(api_key, **options)  # its httpx client belongs to the loop it is made on


async def _collect(items: AsyncIterator[T]) -> list[T]:
    return [item async for item in items]
