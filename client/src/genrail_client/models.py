"""What the API answers, as typed objects (the `/v1` schemas of the OpenAPI)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

JobStatus = Literal["pending", "queued", "processing", "completed", "failed", "canceled", "expired"]
JobType = Literal["copy", "scrape", "static_ad", "ugc_video", "tts", "image_edit"]
FINAL_STATUSES = frozenset({"completed", "failed", "canceled", "expired"})


class Model(BaseModel):
    model_config = ConfigDict(extra="allow")  # a newer API may say more: kept, not refused


class Account(Model):
    user_id: str
    email: str
    api_key: str
    balance: int


class Job(Model):
    id: str
    type: JobType
    status: JobStatus
    cost: int
    input: dict[str, Any]
    output: dict[str, Any] | None = None
    error: str | None = None
    attempt: int = 1
    batch_id: str | None = None
    created_at: datetime
    updated_at: datetime
    replayed: bool = False  # answered again for an idempotency key already used

    @property
    def done(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def file_urls(self) -> list[str]:
        """The URLs of the job's output files (images, video, audio), which expire: read the
        job again for fresh ones."""
        return [f["url"] for f in (self.output or {}).get("files", []) if f.get("url")]


class JobPage(Model):
    items: list[Job]
    next_cursor: str | None = None


class Upload(Model):
    key: str
    content_type: str
    width: int
    height: int
    size_bytes: int


class BatchImage(Model):
    index: int
    job_id: str
    image_key: str
    status: JobStatus
    error: str | None = None
    output_url: str | None = None
    updated_at: datetime


class Batch(Model):
    id: str
    prompt: str
    status: Literal["processing", "completed", "completed_with_errors", "failed"]
    total: int
    counts: dict[str, int]
    progress: float
    cost: int
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None = None
    images: list[BatchImage] = []
    replayed: bool = False

    @property
    def done(self) -> bool:
        return self.status != "processing"


class Transaction(Model):
    seq: int
    kind: str
    amount: int
    balance_after: int
    reason: str | None = None


class Credits(Model):
    balance: int
    transactions: list[Transaction] = []


class Pack(Model):
    id: str
    name: str
    credits: int
    amount_cents: int
    currency: str


class Checkout(Model):
    checkout_url: str
    session_id: str


class WebhookEndpoint(Model):
    id: str
    url: str
    events: list[str]
    description: str = ""
    status: Literal["enabled", "disabled"]
    disabled_reason: str | None = None
    disabled_at: datetime | None = None
    secret_version: int
    previous_secret_valid_until: datetime | None = None
    created_at: datetime
    updated_at: datetime
    secret: str | None = None  # only when created or rotated: store it


class DeliveryTry(Model):
    attempted_at: datetime
    url: str
    delivered: bool
    status_code: int | None = None
    outcome: str
    latency_ms: int
    response: str = ""


class Delivery(Model):
    id: str
    endpoint_id: str | None = None
    job_id: str
    event_type: str
    url: str
    status: Literal["pending", "retrying", "delivered", "failed"]
    attempts: int
    last_attempt_at: datetime | None = None
    created_at: datetime
    tries: list[DeliveryTry] = []
    body: str | None = None  # only when read one by one
