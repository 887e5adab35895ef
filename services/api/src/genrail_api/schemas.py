"""Request and response bodies. Requests are strict, so bad input gets a clear 4xx."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, EmailStr, Field, field_validator

from genrail_events.jobs import WebhookTarget, JobStatus, JobType
from genrail_events.text import unstorable_in

IdempotencyKey = Field(None, min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$",
                       description="Any printable string you choose; the same key names the same job forever",
                       examples=["order-1234-copy"])


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*", mode="before")
    @classmethod
    def _storable_text(cls, value: Any) -> Any:
        """NUL or a lone surrogate anywhere in a string is a 422 (see genrail_events.text)."""
        if (reason := unstorable_in(value)) is not None:
            raise ValueError(reason)
        return value


class UserCreate(Strict):
    email: EmailStr = Field(examples=["ada@example.com"])


class UserCreated(BaseModel):
    user_id: str
    email: str
    api_key: str = Field(description="Shown once: store it, it cannot be retrieved again")
    balance: int


def web_url(url: AnyHttpUrl | None) -> AnyHttpUrl | None:
    """A URL genrail will POST to: http(s) only, of a length every store takes."""
    if url is not None and (url.scheme not in ("http", "https") or len(str(url)) > 2048):
        raise ValueError("must be an http or https URL of at most 2048 characters")
    return url


class Notified(Strict):
    """A job request may name a URL to hear of the job at (signed, as Replicate's are)."""

    webhook: AnyHttpUrl | None = Field(
        None, examples=["https://example.com/hooks/genrail"],
        description="An http(s) URL that genrail POSTs the job to as it changes, signed with Standard Webhooks "
                    "headers (your signing key: GET /v1/webhooks/secret); retried with backoff for up to 3 days "
                    "until it answers 2xx")
    webhook_events_filter: list[Literal["start", "output", "completed"]] = Field(
        default_factory=lambda: ["completed"], min_length=1, max_length=3,
        description="Which events to send: start (work began), output (a result is there), completed (final, "
                    "whatever the outcome)")

    @field_validator("webhook")
    @classmethod
    def webhook_http_only(cls, url: AnyHttpUrl | None) -> AnyHttpUrl | None:
        return web_url(url)

    def webhook_target(self) -> WebhookTarget | None:
        if self.webhook is None:
            return None
        return WebhookTarget(url=str(self.webhook), events=tuple(dict.fromkeys(self.webhook_events_filter)))


NOT_INPUT = {"idempotency_key", "webhook", "webhook_events_filter"}  # about the request, not the job's input


class CopyRequest(Notified):
    product_name: str = Field(min_length=1, max_length=200, examples=["Trailblazer 2 hiking boots"])
    product_description: str = Field("", max_length=5000,
                                     examples=["Waterproof leather boots with a grippy Vibram sole."])
    tone: Literal["professional", "playful", "bold", "luxury", "friendly"] = "professional"
    length: Literal["short", "medium", "long"] = "medium"
    idempotency_key: str | None = IdempotencyKey

    def job_input(self) -> dict[str, Any]:
        return self.model_dump(exclude=NOT_INPUT)


class ScrapeRequest(Notified):
    url: AnyHttpUrl = Field(examples=["https://shop.example.com/products/trailblazer-2"])
    idempotency_key: str | None = IdempotencyKey

    @field_validator("url")
    @classmethod
    def http_only(cls, url: AnyHttpUrl) -> AnyHttpUrl:
        if url.scheme not in ("http", "https"):
            raise ValueError("only http and https URLs can be scraped")
        if len(str(url)) > 2048:
            raise ValueError("URL is longer than 2048 characters")
        return url

    def job_input(self) -> dict[str, Any]:
        return {"url": str(self.url)}


HexColor = Annotated[str, Field(pattern=r"^#[0-9a-fA-F]{6}$", examples=["#1d4ed8"])]


class ProductImage(Notified):
    product_image_url: AnyHttpUrl | None = Field(None, description="An http(s) URL of the product photo",
                                                 examples=["https://shop.example.com/img/boots.jpg"])

    @field_validator("product_image_url")
    @classmethod
    def http_only(cls, url: AnyHttpUrl | None) -> AnyHttpUrl | None:
        if url is not None and url.scheme not in ("http", "https"):
            raise ValueError("only http and https image URLs are accepted")
        return url

    def provider_image(self) -> dict[str, Any]:
        return {"product_image": str(self.product_image_url)} if self.product_image_url else {}


class StaticAdRequest(ProductImage):
    headline: str = Field(min_length=1, max_length=120, examples=["Built for the long way round"])
    cta: str = Field("", max_length=40, examples=["Shop the boots"])
    style: Literal["bold", "minimal", "vibrant"] = "bold"
    brand_colors: list[HexColor] = Field(default_factory=list, max_length=3)
    width: int = Field(1080, ge=256, le=2048)
    height: int = Field(1080, ge=256, le=2048)
    idempotency_key: str | None = IdempotencyKey

    def job_input(self) -> dict[str, Any]:
        return {**self.model_dump(exclude=NOT_INPUT | {"product_image_url"}), **self.provider_image()}


class UgcVideoRequest(ProductImage):
    script: str = Field(min_length=1, max_length=600,
                        examples=["I took these boots up Snowdon in the rain and my feet stayed dry."])
    style: Literal["bold", "minimal", "vibrant"] = "vibrant"
    duration_s: float = Field(3, ge=1, le=8, description="Length of the clip in seconds")
    idempotency_key: str | None = IdempotencyKey

    def job_input(self) -> dict[str, Any]:
        return {**self.model_dump(exclude=NOT_INPUT | {"product_image_url"}), **self.provider_image()}


class TtsRequest(Notified):
    text: str = Field(min_length=1, max_length=5000, examples=["Meet the Trailblazer 2: dry feet, any trail."])
    voice: str = Field("default", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\- ]+$")
    duration_s: float | None = Field(None, ge=0.5, le=30, description="Length of the audio; default from the text")
    idempotency_key: str | None = IdempotencyKey

    @field_validator("text")
    @classmethod
    def has_words(cls, text: str) -> str:
        if not any(ch.isalnum() for ch in text):
            raise ValueError("text must contain at least one word")
        return text

    def job_input(self) -> dict[str, Any]:
        return self.model_dump(exclude=NOT_INPUT, exclude_none=True)


class JobPublic(BaseModel):
    id: str
    type: JobType
    status: JobStatus
    cost: int
    input: dict[str, Any]
    output: dict[str, Any] | None = Field(None, description="The result; media files carry an expiring `url`")
    error: str | None = None
    attempt: int = 1
    batch_id: str | None = None
    created_at: datetime
    updated_at: datetime


class JobPage(BaseModel):
    items: list[JobPublic]
    next_cursor: str | None = Field(None, description="Pass as `cursor` to get the next page; null at the end")


class Transaction(BaseModel):
    seq: int = Field(description="Position in the ledger; also the cursor")
    kind: Literal["granted", "purchased", "debited", "refunded", "adjusted", "reversed"]
    amount: int = Field(description="Credits added (positive) or taken (negative)")
    balance_after: int
    reason: str | None = None
    job_id: str | None = None
    attempt: int | None = None
    payment_id: str | None = None
    occurred_at: datetime


class Credits(BaseModel):
    balance: int
    transactions: list[Transaction] = Field(description="The most recent entries, newest first")


class ErrorBody(BaseModel):
    """An RFC 9457 problem: `type` for programs to branch on, `detail` for people."""

    type: str = Field(examples=["urn:genrail:problem:not-found"],
                      description="The kind of problem, stable across releases: urn:genrail:problem:<kind>")
    title: str = Field(examples=["Not found"], description="The kind's fixed short text")
    status: int = Field(examples=[404], description="The HTTP status, repeated")
    detail: str = Field(examples=["job 5f0c… not found"], description="What went wrong, in words")


class PaymentRequiredBody(ErrorBody):
    type: str = Field(examples=["urn:genrail:problem:insufficient-credits"])
    title: str = Field(examples=["Insufficient credits"])
    status: int = Field(examples=[402])
    detail: str = Field(examples=["insufficient credits: balance 0, cost 1"])
    balance: int = Field(description="Credits the account has")
    cost: int = Field(description="Credits the request would have charged")


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "The request cannot be processed as sent"},
    401: {"model": ErrorBody, "description": "Missing or unknown API key"},
    404: {"model": ErrorBody, "description": "No such resource for this user"},
    409: {"model": ErrorBody, "description": "The resource is not in a state that allows this"},
    413: {"model": ErrorBody, "description": "The request body is too large"},
    422: {"model": ErrorBody, "description": "A field is missing or has the wrong type or value"},
    429: {"model": ErrorBody, "description": "Too many of these open for this user: close one, or try again "
                                             "after Retry-After seconds",
          "headers": {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}}},
    503: {"model": ErrorBody, "description": "Busy for a moment: try again after Retry-After seconds",
          "headers": {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}}},
}
PAYMENT_REQUIRED: dict[int | str, dict[str, Any]] = {
    402: {"model": PaymentRequiredBody, "description": "Not enough credits; nothing was charged"},
}


class UploadPublic(BaseModel):
    key: str = Field(description="Pass it in `image_keys` of POST /v1/batches",
                     examples=["uploads/5f0c.../9a1b2c.png"])
    content_type: str
    width: int
    height: int
    size_bytes: int


class PresignRequest(Strict):
    content_type: Literal["image/jpeg", "image/png", "image/webp"]
    size_bytes: int = Field(gt=0, description="The image's size (or more): storage refuses a larger file",
                            examples=[482113])


class PresignedUpload(BaseModel):
    key: str = Field(description="Pass it in `image_keys` of POST /v1/batches once the upload is done")
    url: str = Field(description="POST a multipart form here: every one of `fields`, then the image as `file`")
    fields: dict[str, str] = Field(description="Form fields to send as they are; they sign the key, the "
                                               "content type and the declared size, which storage enforces")
    expires_in_s: int


class BatchCreate(Strict):
    prompt: str = Field(min_length=1, max_length=1000, examples=["make it sepia and add caption 'Summer sale'"])
    image_keys: list[str] = Field(min_length=1, description="Keys returned by POST /v1/uploads")
    idempotency_key: str | None = IdempotencyKey


class BatchImage(BaseModel):
    index: int
    job_id: str
    image_key: str
    status: JobStatus
    error: str | None = None
    output_url: str | None = Field(None, description="Expiring URL of the edited image, once completed")
    updated_at: datetime


class BatchPublic(BaseModel):
    id: str
    prompt: str
    status: Literal["processing", "completed", "completed_with_errors", "failed"]
    total: int
    counts: dict[str, int] = Field(description="Images by status")
    progress: float = Field(description="Share of images that are final, 0 to 1")
    cost: int
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None = None
    images: list[BatchImage]


class BatchSummary(BaseModel):
    id: str
    prompt: str
    status: Literal["processing", "completed", "completed_with_errors", "failed"]
    total: int
    counts: dict[str, int]
    created_at: datetime


class BatchPage(BaseModel):
    items: list[BatchSummary]
    next_cursor: str | None = None
