from __future__ import annotations

from fastapi import APIRouter, Response

from genrail_events.jobs import JobType

from .. import handlers, rate_limits
from ..deps import CurrentUser, EngineDep, LogDep, SettingsDep
from genrail_readmodels.jobs import job_to_dict
from ..schemas import (ERRORS, PAYMENT_REQUIRED, CopyRequest, JobPublic, ScrapeRequest, StaticAdRequest, TtsRequest,
                       UgcVideoRequest)

router = APIRouter(prefix="/api/generate", tags=["generate"])
RESPONSES = {**PAYMENT_REQUIRED, 401: ERRORS[401], 413: ERRORS[413], 422: ERRORS[422], 429: ERRORS[429]}


async def _create(log, settings, user_id: str, job_type: JobType, body, response: Response,
                  engine) -> JobPublic:
    await rate_limits.job_created(engine, user_id, settings.jobs_per_minute_per_user)
    job, created = await handlers.create_job(log, user_id, job_type, body.job_input(), settings.cost(job_type),
                                             body.idempotency_key)
    if not created:
        response.headers["Idempotent-Replay"] = "true"
    return JobPublic(**job_to_dict(job))


@router.post("/copy", status_code=202, response_model=JobPublic, responses=RESPONSES,
             summary="Write ad copy for a product")
async def generate_copy(body: CopyRequest, user_id: CurrentUser, log: LogDep, settings: SettingsDep,
                        response: Response, engine: EngineDep) -> JobPublic:
    return await _create(log, settings, user_id, JobType.copy, body, response, engine)


@router.post("/scrape", status_code=202, response_model=JobPublic, responses=RESPONSES,
             summary="Scrape a product page: title, description, price, images, Open Graph")
async def generate_scrape(body: ScrapeRequest, user_id: CurrentUser, log: LogDep, settings: SettingsDep,
                          response: Response, engine: EngineDep) -> JobPublic:
    return await _create(log, settings, user_id, JobType.scrape, body, response, engine)


@router.post("/static-ad", status_code=202, response_model=JobPublic, responses=RESPONSES,
             summary="Compose a static ad image (completes later, by provider webhook)")
async def generate_static_ad(body: StaticAdRequest, user_id: CurrentUser, log: LogDep, settings: SettingsDep,
                             response: Response, engine: EngineDep) -> JobPublic:
    return await _create(log, settings, user_id, JobType.static_ad, body, response, engine)


@router.post("/ugc-video", status_code=202, response_model=JobPublic, responses=RESPONSES,
             summary="Make a short UGC-style product video (completes later, by provider webhook)")
async def generate_ugc_video(body: UgcVideoRequest, user_id: CurrentUser, log: LogDep, settings: SettingsDep,
                             response: Response, engine: EngineDep) -> JobPublic:
    return await _create(log, settings, user_id, JobType.ugc_video, body, response, engine)


@router.post("/tts", status_code=202, response_model=JobPublic, responses=RESPONSES,
             summary="Turn text into speech (completes later, by provider webhook)")
async def generate_tts(body: TtsRequest, user_id: CurrentUser, log: LogDep, settings: SettingsDep,
                       response: Response, engine: EngineDep) -> JobPublic:
    return await _create(log, settings, user_id, JobType.tts, body, response, engine)
