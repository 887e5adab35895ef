"""Bodies of the webhook endpoints and deliveries API."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import AnyHttpUrl, BaseModel, Field, field_validator

from genrail_events.jobs import WEBHOOK_EVENTS

from .schemas import Strict, web_url

JobEvent = Literal["start", "output", "completed"]
DeliveryStatus = Literal["pending", "retrying", "delivered", "failed"]
URL_EXAMPLE = "https://example.com/hooks/genrail"


class EndpointCreate(Strict):
    url: AnyHttpUrl = Field(examples=[URL_EXAMPLE], description="Where genrail POSTs the events")
    events: list[JobEvent] = Field(
        default_factory=lambda: list(WEBHOOK_EVENTS), min_length=1, max_length=3,
        description="Which job events it hears of, for every job of the account: start (work began), output "
                    "(a result is there), completed (final, whatever the outcome)")
    description: str = Field("", max_length=200, examples=["order service, production"])

    @field_validator("url")
    @classmethod
    def http_only(cls, url: AnyHttpUrl | None) -> AnyHttpUrl | None:
        return web_url(url)


class EndpointUpdate(Strict):
    url: AnyHttpUrl | None = Field(None, examples=[URL_EXAMPLE])
    events: list[JobEvent] | None = Field(None, min_length=1, max_length=3)
    description: str | None = Field(None, max_length=200)
    enabled: bool | None = Field(None, description="false pauses deliveries; true turns a disabled endpoint "
                                                   "(by you or after persistent failure) back on")

    @field_validator("url")
    @classmethod
    def http_only(cls, url: AnyHttpUrl | None) -> AnyHttpUrl | None:
        return web_url(url)


class RotateSecret(Strict):
    overlap_s: int = Field(86_400, ge=0, le=7 * 86_400,
                           description="How long deliveries stay signed with the previous secret too (seconds)")


class EndpointPublic(BaseModel):
    id: str = Field(examples=["we_5b0f3d1c9a7e4c2b8f6a1d0e9c8b7a65"])
    url: str = Field(examples=[URL_EXAMPLE])
    events: list[str] = Field(examples=[["start", "output", "completed"]])
    description: str
    status: Literal["enabled", "disabled"] = Field(description="disabled: by you, or by genrail after a message "
                                                                "to it failed every try (see disabled_reason)")
    disabled_reason: str | None = None
    disabled_at: datetime | None = None
    secret_version: int = Field(description="Which version of its secret signs deliveries; each rotation adds one")
    previous_secret_valid_until: datetime | None = Field(
        None, description="Until then deliveries also carry a signature with the previous secret")
    created_at: datetime
    updated_at: datetime


class EndpointWithSecret(EndpointPublic):
    secret: str = Field(examples=["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
                        description="Shown once, here: verify each delivery's Standard Webhooks signature with it")


class EndpointList(BaseModel):
    items: list[EndpointPublic]


class AttemptPublic(BaseModel):
    attempted_at: datetime
    url: str
    delivered: bool
    status_code: int | None = Field(None, description="The receiver's HTTP status; none when it never answered")
    outcome: str = Field(examples=["HTTP 200", "ConnectTimeout: timed out", "skipped: endpoint disabled (...)"])
    latency_ms: int
    response: str = Field(description="The first 500 characters of the receiver's answer")


class DeliveryPublic(BaseModel):
    id: str = Field(description="The webhook-id header of every try and resend of it",
                    examples=["msg_0c1f6a4e2b3d4c5e8f9a0b1c2d3e4f50"])
    endpoint_id: str | None = Field(None, description="None: the URL the job itself named (its `webhook`)")
    job_id: str
    event_type: str = Field(examples=["job.completed"])
    url: str
    status: DeliveryStatus
    attempts: int
    last_attempt_at: datetime | None = None
    created_at: datetime
    tries: list[AttemptPublic] = Field(description="Every try, oldest first")


class DeliveryWithBody(DeliveryPublic):
    body: str = Field(description="Exactly the bytes sent (and signed)")


class DeliveryPage(BaseModel):
    items: list[DeliveryPublic]
    next_cursor: str | None = Field(None, description="Pass as `cursor` for the next (older) page")
