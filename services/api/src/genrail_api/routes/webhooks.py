"""The signing secret of the webhooks genrail sends this account (see the pipeline's webhooks_out)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from genrail_runtime.webhook_signing import account_secret

from ..deps import CurrentUser, SettingsDep
from ..errors import ApiError
from ..schemas import ERRORS

router = APIRouter(prefix="/webhooks", tags=["webhooks"])


class WebhooksOff(ApiError):
    status_code = 404


class WebhookSecret(BaseModel):
    key: str = Field(examples=["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
                     description="Verify each delivery's Standard Webhooks signature with it (webhook-id, "
                                 "webhook-timestamp, webhook-signature headers)")


@router.get("/secret", response_model=WebhookSecret, responses={401: ERRORS[401], 404: ERRORS[404]},
            summary="The key that signs the webhooks your jobs ask for")
async def webhook_secret(user_id: CurrentUser, settings: SettingsDep) -> WebhookSecret:
    master = settings.outgoing_webhook_key.get_secret_value()
    if not master:
        raise WebhooksOff("this deployment sends no webhooks (OUTGOING_WEBHOOK_KEY is unset)")
    return WebhookSecret(key=account_secret(master, user_id))
