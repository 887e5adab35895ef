"""POST /webhooks/replicate: Replicate's prediction callbacks, verified first, then applied
to the job they belong to. The job id and attempt ride in the webhook URL we gave Replicate,
so a callback that arrives before the pipeline recorded the prediction id still finds its job."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from genrail_runtime import metrics, webhook_signing
from genrail_commands.jobs import in_job_trace
from genrail_commands.predictions import OutputDownloadFailed, Prediction, apply_prediction, callback_signed

from .deps import HttpDep, LogDep, SettingsDep, StorageDep

log = logging.getLogger("genrail.webhooks")
router = APIRouter(tags=["providers"])
_in_flight: dict[str, asyncio.Lock] = {}


@router.post("/webhooks/replicate", summary="A Replicate prediction callback (Standard Webhooks signed)",
             responses={200: {"description": "Applied, or nothing to do"},
                        400: {"description": "Timestamp outside the tolerance, or not a prediction"},
                        401: {"description": "Missing or bad signature"},
                        503: {"description": "Not configured, or outputs not fetchable yet: deliver again"}})
async def replicate_callback(request: Request, settings: SettingsDep, store: LogDep, storage: StorageDep,
                             http: HttpDep, job_id: Annotated[str | None, Query(max_length=64)] = None,
                             attempt: Annotated[int | None, Query(ge=1)] = None,
                             sig: Annotated[str | None, Query(max_length=64)] = None) -> JSONResponse:
    if not settings.replicate_webhook_secret.get_secret_value():
        return JSONResponse({"detail": "Replicate webhooks are not configured (REPLICATE_WEBHOOK_SECRET)"},
                            status_code=503)
    body = await request.body()
    try:
        webhook_id = webhook_signing.verify(settings.replicate_webhook_secret.get_secret_value(), request.headers,
                                            body, tolerance_s=settings.webhook_tolerance_s)
    except webhook_signing.WebhookTimestampOutOfRange as exc:
        metrics.get().webhook_verification_failed("replicate")
        return JSONResponse({"detail": str(exc)}, status_code=400)
    except webhook_signing.WebhookVerificationError as exc:
        metrics.get().webhook_verification_failed("replicate")
        return JSONResponse({"detail": str(exc)}, status_code=401)
    try:
        prediction = Prediction.from_object(json.loads(body))
        job_id = str(uuid.UUID(job_id)) if job_id else None
    except ValueError:
        return JSONResponse({"detail": "body is not a prediction object, or job_id is not a UUID"}, status_code=400)
    if job_id is not None and (attempt is None or not callback_signed(
            settings.replicate_webhook_secret.get_secret_value(), job_id, attempt, sig)):
        metrics.get().webhook_verification_failed("replicate")
        return JSONResponse({"detail": "the callback URL is not signed for this job and attempt (sig)"},
                            status_code=401)
    if job_id is None:
        log.warning("webhook.unknown_prediction", extra={"prediction_id": prediction.id, "webhook_id": webhook_id})
        return JSONResponse({"status": "ignored", "reason": "no job for this prediction"})
    # Concurrent deliveries of one webhook wait for the first instead of downloading again.
    lock = _in_flight.setdefault(webhook_id, asyncio.Lock())
    try:
        async with lock, in_job_trace(store, job_id, "replicate.prediction"):
            outcome = await apply_prediction(
                store, storage, http, job_id, attempt, prediction, max_bytes=settings.max_output_bytes,
                timeout_s=settings.output_download_timeout_s, output_hosts=settings.allowed_output_hosts())
    except OutputDownloadFailed as exc:
        log.warning("webhook.output_unavailable", extra={"job_id": job_id, "reason": str(exc)})
        return JSONResponse({"detail": f"outputs not available yet: {exc}"}, status_code=503)
    finally:
        if not lock.locked():
            _in_flight.pop(webhook_id, None)
    log.info("webhook.applied", extra={"job_id": job_id, "prediction_id": prediction.id,
                                       "status": prediction.status, "outcome": outcome,
                                       "webhook_id": webhook_id})
    return JSONResponse({"status": "ok", "outcome": outcome})
