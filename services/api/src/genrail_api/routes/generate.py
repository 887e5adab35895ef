from __future__ import annotations

from fastapi import APIRouter, Response

from genrail_events.jobs import JobType

from .. import handlers, rate_limits
from ..deps import CurrentUser, EngineDep, IdempotencyKeyHeader, LogDep, SettingsDep
from ..errors import Unprocessable, one_idempotency_key
from genrail_readmodels.jobs import job_to_dict
from ..schemas import (ERRORS, PAYMENT_REQUIRED, CopyRequest, JobPublic, ScrapeRequest, StaticAdRequest, TtsRequest,
                       UgcVideoRequest)

router = APIRouter(prefix="/generate", tags=["generate"])
RESPONSES = {**PAYMENT_REQUIRED, 401: ERRORS[401], 413: ERRORS[413], 422: ERRORS[422], 429: ERRORS[429]}


async def create_job(log, settings, user_id: str, job_type: JobType, body, response: Response,
                     engine, key: str | None) -> JobPublic:
    """What POST /v1/generate/* does (the studio's job forms too): checks, limit, charge, job."""
    key = one_idempotency_key(key, body.idempotency_key)
    if body.webhook is not None and not settings.outgoing_webhook_key.get_secret_value():
        raise Unprocessable("webhook: this deployment sends no webhooks (OUTGOING_WEBHOOK_KEY is unset)")
    await rate_limits.job_created(engine, user_id, settings.jobs_per_minute_per_user)
    job, created = await handlers.create_job(log, user_id, job_type, body.job_input(), settings.cost(job_type), key,
                                             webhook=body.webhook_target())
    if not created:
        replayed(response)
    return JobPublic(**job_to_dict(job))


def replayed(response: Response) -> None:
    """Say that the answer is the one an earlier request with the same key got (Stripe's header;
    `Idempotent-Replay` is what earlier releases sent)."""
    response.headers["Idempotent-Replayed"] = "true"
    response.headers["Idempotent-Replay"] = "true"


@router.post("/copy", status_code=202, response_model=JobPublic, responses=RESPONSES,
             summary="Write ad copy for a product")
async def generate_copy(body: CopyRequest, user_id: CurrentUser, log: LogDep, settings: SettingsDep,
                        response: Response, engine: EngineDep, key: IdempotencyKeyHeader) -> JobPublic:
    return await create_job(log, settings, user_id, JobType.copy, body, response, engine, key)


@router.post("/scrape", status_code=202, response_model=JobPublic, responses=RESPONSES,
             summary="Scrape a product page: title, description, price, images, Open Graph")
async def generate_scrape(body: ScrapeRequest, user_id: CurrentUser, log: LogDep, settings: SettingsDep,
                          response: Response, engine: EngineDep, key: IdempotencyKeyHeader) -> JobPublic:
    return await create_job(log, settings, user_id, JobType.scrape, body, response, engine, key)


@router.post("/static-ad", status_code=202, response_model=JobPublic, responses=RESPONSES,
             summary="Compose a static ad image (completes later, by provider webhook)")
async def generate_static_ad(body: StaticAdRequest, user_id: CurrentUser, log: LogDep, settings: SettingsDep,
                             response: Response, engine: EngineDep, key: IdempotencyKeyHeader) -> JobPublic:
    return await create_job(log, settings, user_id, JobType.static_ad, body, response, engine, key)


@router.post("/ugc-video", status_code=202, response_model=JobPublic, responses=RESPONSES,
             summary="Make a short UGC-style product video (completes later, by provider webhook)")
async def generate_ugc_video(body: UgcVideoRequest, user_id: CurrentUser, log: LogDep, settings: SettingsDep,
                             response: Response, engine: EngineDep, key: IdempotencyKeyHeader) -> JobPublic:
    return await create_job(log, settings, user_id, JobType.ugc_video, body, response, engine, key)


@router.post("/tts", status_code=202, response_model=JobPublic, responses=RESPONSES,
             summary="Turn text into speech (completes later, by provider webhook)")
async def generate_tts(body: TtsRequest, user_id: CurrentUser, log: LogDep, settings: SettingsDep,
                       response: Response, engine: EngineDep, key: IdempotencyKeyHeader) -> JobPublic:
    return await create_job(log, settings, user_id, JobType.tts, body, response, engine, key)
