"""The webhooks genrail sends this account: its endpoints (each with a secret of its own,
shown once, rotatable with an overlap), every delivery try by try, and resends; and the
account key that signs the webhooks single jobs ask for (see the pipeline's webhooks_out)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response

from genrail_commands.webhooks import (change_endpoint, create_endpoint, endpoints_of, load_endpoint,
                                       load_message)
from genrail_events import webhooks
from genrail_readmodels import webhooks as webhooks_table
from genrail_runtime.webhook_signing import account_secret
from pydantic import BaseModel, Field

from ..deps import CurrentUser, DbDep, IdempotencyKeyHeader, LogDep, SettingsDep
from ..errors import ApiError, Conflict, KeyReused, NotFound
from ..schemas import ERRORS
from ..webhook_schemas import (DeliveryPage, DeliveryStatus, DeliveryPublic, DeliveryWithBody, EndpointCreate, EndpointList,
                               EndpointPublic, EndpointUpdate, EndpointWithSecret, RotateSecret)

router = APIRouter(prefix="/webhooks", tags=["webhooks"])
EndpointId = Annotated[str, Path(pattern=r"^we_[0-9a-f]{32}$", description="The endpoint's id")]
DeliveryId = Annotated[str, Path(pattern=r"^msg_[0-9a-f]{32}$", description="The delivery's id (its webhook-id)")]
READ = {401: ERRORS[401], 404: ERRORS[404], 422: ERRORS[422]}
CHANGE = {**READ, 409: ERRORS[409]}


class WebhooksOff(ApiError):
    status_code = 404


class WebhookSecret(BaseModel):
    key: str = Field(examples=["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
                     description="Verify each delivery's Standard Webhooks signature with it (webhook-id, "
                                 "webhook-timestamp, webhook-signature headers)")


def _master(settings) -> str:
    master = settings.outgoing_webhook_key.get_secret_value()
    if not master:
        raise WebhooksOff("this deployment sends no webhooks (OUTGOING_WEBHOOK_KEY is unset)")
    return master


def _public(endpoint: webhooks.Endpoint) -> dict[str, Any]:
    return {"id": endpoint.id, "url": endpoint.url, "events": list(endpoint.events),
            "description": endpoint.description, "status": str(endpoint.status),
            "disabled_reason": endpoint.disabled_reason,
            "disabled_at": endpoint.disabled_at,
            "secret_version": endpoint.secret_version, "previous_secret_valid_until": endpoint.previous_valid_until,
            "created_at": endpoint.created_at, "updated_at": endpoint.updated_at}


async def _endpoint(log, user_id: str, endpoint_id: str) -> webhooks.Endpoint:
    endpoint, _ = await load_endpoint(log, user_id, endpoint_id)
    if endpoint is None or endpoint.status is webhooks.EndpointStatus.deleted:
        raise NotFound(f"webhook endpoint {endpoint_id} not found")
    return endpoint


async def _change(log, user_id: str, endpoint_id: str, decide) -> webhooks.Endpoint:
    await _endpoint(log, user_id, endpoint_id)
    try:
        endpoint, _ = await change_endpoint(log, user_id, endpoint_id, decide)
    except webhooks.WebhookRefused as exc:
        raise Conflict(str(exc)) from None
    return endpoint


@router.get("/secret", response_model=WebhookSecret, responses={401: ERRORS[401], 404: ERRORS[404]},
            summary="The key that signs the webhooks your jobs ask for")
async def webhook_secret(user_id: CurrentUser, settings: SettingsDep) -> WebhookSecret:
    return WebhookSecret(key=account_secret(_master(settings), user_id))


@router.post("/endpoints", status_code=201, response_model=EndpointWithSecret, responses=CHANGE,
             summary="Add an endpoint that hears of every job of yours; its secret is shown once, here")
async def create(body: EndpointCreate, user_id: CurrentUser, log: LogDep, settings: SettingsDep,
                 response: Response, idempotency_key: IdempotencyKeyHeader = None) -> EndpointWithSecret:
    master = _master(settings)
    endpoint_id = webhooks.endpoint_id_for(user_id, idempotency_key)
    existing = len(await endpoints_of(log, user_id))
    events = tuple(dict.fromkeys(body.events))
    try:
        created = webhooks.decide_create(user_id, endpoint_id, str(body.url), events, body.description,
                                         existing=existing)
    except webhooks.WebhookRefused as exc:
        raise Conflict(str(exc)) from None
    if not await create_endpoint(log, created):
        endpoint = await _endpoint(log, user_id, endpoint_id)
        if (endpoint.url, endpoint.events, endpoint.description) != (str(body.url), events, body.description):
            raise KeyReused(f"the idempotency key {idempotency_key!r} already created another endpoint")
        response.headers["Idempotent-Replayed"] = "true"
    else:
        endpoint = webhooks.evolve(None, created)  # type: ignore[assignment]
    return EndpointWithSecret(**_public(endpoint),
                              secret=webhooks.endpoint_secret(master, endpoint.id, endpoint.secret_version))


@router.get("/endpoints", response_model=EndpointList, responses={401: ERRORS[401]},
            summary="Your webhook endpoints (secrets are not shown again)")
async def list_endpoints(user_id: CurrentUser, log: LogDep) -> EndpointList:
    return EndpointList(items=[EndpointPublic(**_public(e)) for e in await endpoints_of(log, user_id)])


@router.get("/endpoints/{endpoint_id}", response_model=EndpointPublic, responses=READ,
            summary="One of your webhook endpoints")
async def get_endpoint(endpoint_id: EndpointId, user_id: CurrentUser, log: LogDep) -> EndpointPublic:
    return EndpointPublic(**_public(await _endpoint(log, user_id, endpoint_id)))


@router.patch("/endpoints/{endpoint_id}", response_model=EndpointPublic, responses=CHANGE,
              summary="Change an endpoint's URL, events or description, or turn it off or back on")
async def update_endpoint(endpoint_id: EndpointId, body: EndpointUpdate, user_id: CurrentUser,
                          log: LogDep) -> EndpointPublic:
    events = tuple(dict.fromkeys(body.events)) if body.events is not None else None
    endpoint = await _change(log, user_id, endpoint_id, lambda ep: webhooks.decide_update(
        ep, url=str(body.url) if body.url is not None else None, events=events, description=body.description))
    if body.enabled is False:
        endpoint = await _change(log, user_id, endpoint_id,
                                 lambda ep: webhooks.decide_disable(ep, "turned off by its owner", by="owner"))
    elif body.enabled is True:
        endpoint = await _change(log, user_id, endpoint_id, webhooks.decide_enable)
    return EndpointPublic(**_public(endpoint))


@router.post("/endpoints/{endpoint_id}/rotate-secret", response_model=EndpointWithSecret, responses=CHANGE,
             summary="A new secret for the endpoint; the old one also signs deliveries until the overlap ends")
async def rotate_secret(endpoint_id: EndpointId, user_id: CurrentUser, log: LogDep, settings: SettingsDep,
                        body: RotateSecret | None = None) -> EndpointWithSecret:
    master = _master(settings)
    overlap = timedelta(seconds=(body or RotateSecret()).overlap_s)
    endpoint = await _change(log, user_id, endpoint_id, lambda ep: webhooks.decide_rotate(ep, overlap))
    return EndpointWithSecret(**_public(endpoint),
                              secret=webhooks.endpoint_secret(master, endpoint.id, endpoint.secret_version))


@router.delete("/endpoints/{endpoint_id}", status_code=204, responses=READ,
               summary="Remove an endpoint: nothing more is sent to it, tries in progress stop")
async def delete_endpoint(endpoint_id: EndpointId, user_id: CurrentUser, log: LogDep) -> Response:
    await _change(log, user_id, endpoint_id, webhooks.decide_delete)
    return Response(status_code=204)


@router.get("/deliveries", response_model=DeliveryPage, responses={400: ERRORS[400], 401: ERRORS[401],
                                                                    422: ERRORS[422]},
            summary="Every webhook genrail sent you, newest first, with each try")
async def list_deliveries(
        user_id: CurrentUser, db: DbDep,
        endpoint_id: Annotated[str | None, Query(pattern=r"^we_[0-9a-f]{32}$")] = None,
        job_id: Annotated[uuid.UUID | None, Query(description="Only the deliveries of this job")] = None,
        status: Annotated[DeliveryStatus | None, Query()] = None,
        cursor: Annotated[str | None, Query(pattern=r"^[0-9]{1,19}$")] = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50) -> DeliveryPage:
    rows = await webhooks_table.messages_of(db, user_id, endpoint_id=endpoint_id,
                                            job_id=str(job_id) if job_id else None, status=status,
                                            before=int(cursor) if cursor else None, limit=limit)
    next_cursor = str(rows[-1]["position"]) if len(rows) == limit else None
    return DeliveryPage(items=[DeliveryPublic(**r) for r in rows], next_cursor=next_cursor)


@router.get("/deliveries/{delivery_id}", response_model=DeliveryWithBody, responses=READ,
            summary="One delivery, with the body sent and each try")
async def get_delivery(delivery_id: DeliveryId, user_id: CurrentUser, db: DbDep) -> DeliveryWithBody:
    row = await webhooks_table.message(db, user_id, delivery_id)
    if row is None:
        raise NotFound(f"webhook delivery {delivery_id} not found")
    return DeliveryWithBody(**row)


@router.post("/deliveries/{delivery_id}/resend", status_code=202, response_model=DeliveryWithBody, responses=CHANGE,
             summary="Send a delivered or failed delivery again (same webhook-id and body, fresh signature)")
async def resend(delivery_id: DeliveryId, user_id: CurrentUser, db: DbDep, log: LogDep) -> DeliveryWithBody:
    row = await webhooks_table.message(db, user_id, delivery_id)
    message = await load_message(log, user_id, delivery_id)
    if row is None or message is None:
        raise NotFound(f"webhook delivery {delivery_id} not found")
    if row["status"] in ("pending", "retrying"):
        raise Conflict(f"webhook delivery {delivery_id} is still being tried ({row['status']})")
    if message.endpoint_id is not None:
        endpoint = await _endpoint(log, user_id, message.endpoint_id)
        if endpoint.status is not webhooks.EndpointStatus.enabled:
            raise Conflict(f"its endpoint {endpoint.id} is disabled: turn it back on first "
                           "(PATCH /v1/webhooks/endpoints/{id} with enabled: true)")
    requested = webhooks.resend_requested(message, requested_by=user_id)
    await log.append(webhooks.subject_for(requested), requested)
    return DeliveryWithBody(**{**row, "status": "pending"})
